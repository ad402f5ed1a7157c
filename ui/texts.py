"""The tabs' "More" texts and glossary: what the numbers and words mean (kept out of the layout code)."""

import gradio as gr

STEER_MORE = """
- **A feature belongs to one SAE.** Each block and denoising window has its own SAE, so feature 63 of
  the middle window is another feature in the early one. Choosing a row or a search hit selects the
  feature for the heatmap, the steering ids and the top images; changing the block or window clears
  typed ids.
- **mean**: the feature's activation averaged over every position and the window's steps; **peak**:
  at its strongest position. The heatmap's colour bar runs from 0 to the map's peak.
- **label**: the attribute value the feature fires for on at least 80 % of the images where it
  fires, in the dictionary's generated images (on toy-shapes, only values of the region it fires on,
  object or background). A blank label means no value reaches 80 %, so no name is shown rather than
  a wrong one. A search for a value no feature stands for says how near the nearest one comes.
- **A group** ("triangle" at the mid block) is a value no single feature stands for, but a few
  features do together: at least 80 % precise on images they were not chosen on. A search hit says
  so. Steering a shape's group everywhere rarely redraws the shape (docs/steer.md).
- **A read-out** ("circle" at the mid block) is a value no feature or group stands for, read by
  weighing some features for it against others (for circle: round-shape features minus spiky ones),
  also at least 80 % precise on images it was not fitted on. Its ids are the features for the value;
  steering adds those alone. A value that lies between others ("orange", between red and yellow, at
  the mid block) is read against each rival in turn and fires where it wins every contest.
- **A place** ("top left") is where the object is, not a feature: the UNet draws an object the same
  way wherever it is. Search finds a place as the block's object features; steering it puts them in
  that cell, which moves the object there in the early window.
- **Strength β**: a spatial edit sets the features to β × the code's norm inside the region and to 0
  outside; a global edit adds β × (the position's code norm ÷ the sum over positions) × each
  feature's direction everywhere (the paper's two edits). Each model's defaults come from its
  measured tables (docs/steer.md).
"""

ERASE_MORE = """
- **Erase red** with CAD: at the default ratio red goes from 1.00 to 0.07 ± 0.09 on red prompts (mean ± sd
  over three attribution seeds), but the rest of those images falls from 0.97 to 0.69 right and four in ten
  other colours change. **UCE** takes red off and keeps the other colours.
- **Amplify red** (ratio 0.006): on prompts that name no colour, red rises from 0.12 to 0.49 ± 0.06 with
  0.92 of the rest kept. Striped rises only from 0.08 to 0.19 ± 0.13 there. On toy-shapes the concept's
  images for amplify leave its attribute open: a prompt that already asks for it cannot show it amplified.
- **Attribution**: *faithful* draws a fresh trajectory per timestep; on toy-shapes, with 6 images, two seeds
  agree at Spearman 0.81 and zero 58 % of the same weights, against 0.42 and 28 % for *fast*.
- **Concepts to keep** have their scores subtracted (*presence*: what each needs; *identity*, erase only:
  what tells them apart, with the *max*). Nothing in the shared model changes: the edit lives in your
  request.
The tables, with the commands that measure them, are in docs/erase.md.
"""

GLOSSARY = """
- **SAE (sparse autoencoder)**: a layer trained to rewrite what a UNet block adds to the image as a
  few active *features* out of thousands (TopK: only the k strongest stay on at each position).
- **Feature**: one direction an SAE learned; its *activation* at a position says how much of it is
  there. A feature id belongs to one SAE (one block and window).
- **Delta (Δ)**: what a cross-attention transformer block adds to its input, output − input; the
  SAEs read it (SAeUron's read the block output instead).
- **Block**: where in the UNet the SAE reads (down, mid or up); the mid block is the coarsest grid.
- **Window**: which denoising steps an edit acts in: early (layout), middle (style), final (detail),
  all, or steps A:B. Each window has its own SAE.
- **Strength β**: how hard a steering edit pushes the features (see the Steer tab's More).
- **CFG branch**: classifier-free guidance runs the model with and without the prompt; *cond* edits
  the half with the prompt, *both* edits both halves.
- **Label**: the attribute value a feature fires for on at least 80 % of the images where it fires;
  blank when no value is that reliable.
- **Attribution (CAD)**: each feed-forward weight's score W · ∂J/∂W for how much it carries a concept;
  zeroing the top-scoring weights erases (or amplifies) the concept for one request.
- **UCE**: a closed-form edit of the cross-attention keys and values that maps a concept's words onto
  a neutral target while keeping named other concepts.
- **x0 preview**: at every denoising step, the model's current guess of the final image.
- **IoU**: how well two masks agree, overlap ÷ union (1: the same, 0: no overlap).
- **Judge**: on toy-shapes, a small classifier that reads every attribute of an image, so the app
  can count how often an edit worked.
"""


def glossary() -> None:
    """The glossary accordion every tab opens with (call inside the tab's layout)."""
    with gr.Accordion("Glossary: SAE, feature, window, strength, attribution ...", open=False):
        gr.Markdown(GLOSSARY)
