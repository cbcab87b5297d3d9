"""Runs auto_annotate with the fake colour detector in its own process, for the kill test.

python -m tests.annotate_process IMGS POINT IMAGE: writes IMGS/at_point and sleeps when
the label of IMAGE is about to be written (POINT "before_xml") or was just written
("after_xml"), so the test can kill the process there.
"""

import sys
import time
from pathlib import Path

from auto_annotate import annotate
from auto_annotate.annotate import Options, annotate_folder
from auto_annotate.label_map import parse_label_map
from tests.helpers import LABEL_MAP, FakeColorDetector


def main(imgs: Path, point: str, image: str) -> None:
    real_write = annotate.atomic_write_text

    def write_and_wait(path, text):
        if point == "after_xml":
            real_write(path, text)
        if Path(path).stem == Path(image).stem:
            (imgs / "at_point").write_text(point)
            time.sleep(600)
        if point == "before_xml":
            real_write(path, text)

    annotate.atomic_write_text = write_and_wait
    annotate_folder(FakeColorDetector(), parse_label_map(LABEL_MAP), imgs,
                    options=Options(progress=False, model_id="fake"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
