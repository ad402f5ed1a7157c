"""toy-shapes: a world of rendered shapes whose concepts are known exactly (design.md §4)."""
