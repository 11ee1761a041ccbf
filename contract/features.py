"""Feature names shared by ingestion, Transform, Trainer and serving."""

IMAGE_KEY = 'image'            # raw: encoded image bytes; transformed: raw uint8 pixels
LABEL_KEY = 'label'            # int64 class index into the label vocabulary
CLASS_NAME_KEY = 'class_name'  # the label's class name (raw only): Evaluator slices
FILENAME_KEY = 'filename'      # source path relative to the data folder (raw only)
# Plain facts about each stored image (raw only), for data validation: TFDV compares their
# distributions span to span. Nothing after ExampleGen reads them (serving never needs them).
IMAGE_HEIGHT_KEY = 'image_height'        # int64 pixels, from the image header
IMAGE_WIDTH_KEY = 'image_width'          # int64 pixels
IMAGE_BYTE_SIZE_KEY = 'image_byte_size'  # int64 bytes of the stored encoded image
IMAGE_FORMAT_KEY = 'image_format'        # JPEG, PNG, GIF or BMP
IMAGE_FACT_KEYS = (IMAGE_HEIGHT_KEY, IMAGE_WIDTH_KEY, IMAGE_BYTE_SIZE_KEY, IMAGE_FORMAT_KEY)
# Transform vocabulary of '<label id> <class name>' entries: the class names travel with
# the data from ExampleGen to the Trainer (see trainer.preprocessing).
CLASS_VOCABULARY = 'class_names'

# Serving signatures beside `serving_default` (tf.Example in): encoded image bytes in, for
# TF Serving's REST API; and serving_default without its string output, for TFX's
# BulkInferrer (tfx_bsl 1.16's RunInference cannot split string outputs).
IMAGE_BYTES_SIGNATURE = 'serving_image_bytes'
EXAMPLES_NUMERIC_SIGNATURE = 'examples_numeric'

# File names ingestion and `predict` read as images (content still decides the format);
# anything else is an OS or tool file, ignored.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')
