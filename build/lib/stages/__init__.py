"""face2anime: photo-to-anime face translation with CycleGAN guided by Grad-CAM.

One module per pipeline stage (each a Typer command registered in :mod:`stages.cli`),
plus shared modules (:mod:`stages.common`, networks, image I/O, synthetic faces).
"""
