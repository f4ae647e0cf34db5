"""The public archive of sent newsletter issues and its Atom feed (DESIGN.md §5.4)."""
