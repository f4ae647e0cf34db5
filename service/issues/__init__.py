"""Newsletter issues: composing, rendering and sending (DESIGN.md §1.2)."""
