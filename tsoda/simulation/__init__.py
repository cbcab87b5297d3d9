"""What the loop is worth: simulate on hidden labels, shared stages, label effort."""
