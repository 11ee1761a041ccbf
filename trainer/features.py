"""Feature names shared by ingestion, Transform, Trainer and serving."""

IMAGE_KEY = 'image'        # raw: encoded image bytes; transformed: raw uint8 pixels
LABEL_KEY = 'label'        # int64 class index into the label vocabulary
FILENAME_KEY = 'filename'  # source path relative to the data folder (raw only)
