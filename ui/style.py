"""The page's own CSS over Gradio's theme: each rule fixes something a student saw at 1400 px
(`tests/test_browser_layout.py` checks the page with it)."""

CSS = """
.pixelated img, #previews img, #top-images img, .preview img { image-rendering: pixelated; }
.pixelated img { width: 100%; height: 100%; object-fit: contain; }
label[data-testid="block-label"].float { position: static !important; margin: 0 0 4px 0; }
#heatmap-grid img, #composition-strip img { max-width: 100%; height: auto; object-fit: contain; }
.small-empty-file .empty { min-height: 0 !important; height: 56px !important; }
"""
"""In order: small toy images are shown enlarged with crisp pixels (the file keeps its true size), also
in a gallery's enlarged view. A component's name badge sits above its picture or plot, never over
it: Gradio floats it over the top left corner, where the toy's objects and a plot's title often are.
Wide figure images shrink to the page. A file box (an experiment zip, an evolution's downloads)
waits small for its files: Gradio's empty box (236 px) was the tallest thing on a tab."""
