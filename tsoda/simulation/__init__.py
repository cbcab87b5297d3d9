"""What the loop is worth: simulate on hidden labels, shared stages, label effort."""

# The baselines `tsoda simulate --baselines` can train (here, so the command line reads them
# without importing the simulation and TensorFlow).
BASELINES = ("hand_only", "all_labels")
