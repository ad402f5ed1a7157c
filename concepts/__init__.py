"""Concept Lab core: see, steer and erase the concepts inside a text-to-image diffusion model.

The core never imports gradio; `app.py` is the only UI code.
"""
