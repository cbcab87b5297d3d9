"""The model: backbones, BiFPN, the task with ignore regions, registration, warm start."""
