"""The tabs' "More" texts: what the numbers and figures mean (kept out of the layout code)."""

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
- **Strength β**: a spatial edit sets the features to β × the code's norm inside the region and to 0
  outside; a global edit adds β × (the position's code norm ÷ the sum over positions) × each
  feature's direction everywhere (the paper's two edits). Each model's defaults come from its
  measured tables (docs/steer.md).
"""
