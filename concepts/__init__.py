"""Concept Lab core: see, steer and erase the concepts inside a text-to-image diffusion model.

The top-level modules are the core every panel uses (registry → pipeline → hooks → SAE); one
package per panel (`steer/`, `evolve/`, `edit/`) builds on it; `toy/` is the toy-shapes world and
`training/` trains SAEs. The core never imports gradio: the UI is `app.py` and `ui/`.
"""
