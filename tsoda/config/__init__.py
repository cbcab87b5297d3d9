"""pipeline.config: the schema, reading it, and mapping it onto a Model Garden experiment."""
