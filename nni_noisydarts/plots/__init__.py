"""PNG plots of searches: alpha evolution, skip counts and derived architectures."""

import matplotlib

# Plots are written to files only; the non-interactive backend works without a display.
matplotlib.use("Agg")
