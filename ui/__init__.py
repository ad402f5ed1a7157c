"""The app's tabs, one module each (layout and handlers together); `app.py` assembles them.

`common` holds what every tab shares (registry, device, number parsing, the user-error wrapper).
Only this package and `app.py` import gradio: the core (`concepts/`) never does.
"""
