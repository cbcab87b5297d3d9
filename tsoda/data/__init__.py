"""Labels -> records: VOC folders as TFRecords (write, read back, draw, on Beam), anchors."""
