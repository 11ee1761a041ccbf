"""Feature names shared by ingestion, Transform, Trainer and serving."""

IMAGE_KEY = 'image'            # raw: encoded image bytes; transformed: raw uint8 pixels
LABEL_KEY = 'label'            # int64 class index into the label vocabulary
CLASS_NAME_KEY = 'class_name'  # the label's class name (raw only): Evaluator slices
FILENAME_KEY = 'filename'      # source path relative to the data folder (raw only)
# Transform vocabulary of '<label id> <class name>' entries: the class names travel with
# the data from ExampleGen to the Trainer (see trainer.preprocessing).
CLASS_VOCABULARY = 'class_names'
