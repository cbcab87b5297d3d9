"""Train, export (SavedModel, TFLite), evaluate, model size; one machine or several."""
