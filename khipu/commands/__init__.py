"""Sub-commands of the `khipu` command line that belong to the node as a whole."""
