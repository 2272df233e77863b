"""The notebooks' self-checks: a question, the learner's answer, and a verdict that explains.

In a notebook: `answer = None` in one cell, `gu.self_check("04.1", answer)` in the next. While the
answer is None the check only says so (the notebook still runs top to bottom); a right answer is
confirmed with the reasoning; a wrong one raises SelfCheckError, whose one line gives the reasoning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable


class SelfCheckError(AssertionError):
    """A self-check's answer is not right; the message explains why."""


def _word(*accepted: str) -> Callable[[Any], bool]:
    return lambda answer: isinstance(answer, str) and answer.strip().lower() in accepted


def _number(value: float, tolerance: float = 0) -> Callable[[Any], bool]:
    return lambda answer: (
        isinstance(answer, (int, float)) and not isinstance(answer, bool) and abs(answer - value) <= tolerance
    )


@dataclass(frozen=True)
class Check:
    right: Callable[[Any], bool]
    why: str
    solution: Any  # an answer that passes, for the tests and the notebook's collapsed solution
    wrong: Any  # a tempting answer that fails


CHECKS = {
    "01.1": Check(
        _number(3 * 224 * 224),
        "the gradient has the input's shape, 3 channels x 224 x 224 = 150528 numbers per class",
        150528,
        224 * 224,
    ),
    "01.2": Check(
        _word("a"),
        "the probability's gradient also rises when the other classes' logits fall, so it mixes in evidence against "
        "the competitors (a)",
        "a",
        "b",
    ),
    "02.1": Check(
        _word("no", "false"),
        "without max pooling, a multiplying layer or a non-rectifier activation, nothing on the deconvnet's way back "
        "reads the image: the map is the same for noise",
        "no",
        "yes",
    ),
    "02.2": Check(_number(0), "the deconvnet passes max(R, 0) whatever the forward input: max(-2, 0) = 0", 0, -2),
    "03.1": Check(
        _number(0), "guided backprop needs both R > 0 and 0 < x < 6; here x = -1, so the rectifier was off: 0", 0, 5
    ),
    "03.2": Check(
        _number(0),
        "a negative signal is dropped by guided backprop even where the rectifier was on: max(-3, 0) * 1 = 0",
        0,
        -3,
    ),
    "04.1": Check(
        _number(7),
        "EfficientNet-Lite0 downsamples by 32: 224 / 32 = 7, so Grad-CAM at bn2 is 7 x 7 before upsampling",
        7,
        14,
    ),
    "04.2": Check(
        _number(49),
        "after bn2 come global average pooling over 7 x 7 = 49 positions and the classifier: alpha = w / 49",
        49,
        7,
    ),
    "05.1": Check(
        _number(0), "guided Grad-CAM is the product of the two maps: anything times a Grad-CAM of 0 is 0", 0, 1
    ),
    "05.2": Check(
        _word("gradcam", "grad-cam"),
        "guided backprop's maps look alike for every class; Grad-CAM's factor is what tells the classes apart",
        "gradcam",
        "guided",
    ),
    "06.1": Check(_number(9), "ceil(260 / 32) = 9: Lite2's last layer is 9 x 9", 9, 8),
    "06.2": Check(
        _word("no"),
        "Lite0, Lite1 and Lite2 are one architecture scaled up; comparing different architectures needs the "
        "torchvision rows",
        "no",
        "yes",
    ),
    "07.1": Check(_number(169), "(224 - 32) / 16 + 1 = 13 positions along each side, 13 x 13 = 169", 169, 196),
    "07.2": Check(_number(3), "169 occluded copies in batches of 64 take ceil(169 / 64) = 3 forward passes", 3, 169),
    "08.1": Check(
        lambda a: isinstance(a, (set, list, tuple)) and {str(m) for m in a} == {"deconvnet", "guided_backprop"},
        "deconvnet and guided backprop keep their maps with the top of the network random; Grad-CAM and the plain "
        "gradient change",
        {"deconvnet", "guided_backprop"},
        {"guided_backprop"},
    ),
    "08.2": Check(
        lambda a: isinstance(a, float) and math.isnan(a),
        "a constant map has no ranking, so the rank correlation is undefined: NaN (float('nan')), not 0",
        float("nan"),
        0.0,
    ),
    "09.1": Check(
        _word("lower"),
        "deletion removes the top-ranked pixels first: a faithful map makes the probability fall fast, a low area",
        "lower",
        "higher",
    ),
    "09.2": Check(
        _word("no"),
        "the centre prior never looks at the image and scores about as well on insertion: the score alone is weak "
        "evidence",
        "no",
        "yes",
    ),
    "10.1": Check(
        _word("b"),
        "completeness: the attributions add up to S_c(x) - S_c(x'), the change of the logit from the baseline to the "
        "image (b)",
        "b",
        "a",
    ),
    "10.2": Check(
        _word("input_x_gradient", "gradient x input"),
        "on a linear model the gradient is the same along the path, so IG from a zero baseline is x times the gradient",
        "input_x_gradient",
        "smoothgrad",
    ),
    "11.1": Check(
        _number(192),
        "Score-CAM runs one masked image per channel, and reads every class from the same 192 passes",
        192,
        576,
    ),
    "11.2": Check(
        _word("eigencam", "eigen-cam"),
        "Eigen-CAM projects the activations on their first principal component: the class never enters",
        "eigencam",
        "cam",
    ),
    "12.1": Check(
        _number(1), "the same map for every class: a map's rank correlation with itself is 1, the worst score", 1, 0
    ),
    "12.2": Check(
        _word("no"),
        "a map that never looks at the image scores the same: the score says nothing the position of the subject does "
        "not",
        "no",
        "yes",
    ),
    "12.3": Check(
        _number(2 / 64, 0.0005),
        "if each photo were a coin toss, count the chance of six wins in a row, and add the chance of six losses: the "
        "two-sided test counts both tails",
        0.031,
        1 / 64,
    ),
    "13.1": Check(
        _number(16 / 4096, 0.00005),
        "a flat map puts on a region the region's share of the pixels: count the marker's pixels and the image's",
        0.0039,
        0.0625,
    ),
    "13.2": Check(
        _word("no"),
        "Eigen-CAM is computed from the activations alone, without the class: its map for the shape's class and for "
        "the marker's class is one map, so it cannot compare their evidence",
        "no",
        "yes",
    ),
}


def self_check(name: str, answer: Any) -> bool | None:
    """Check `answer` to the self-check `name`: None says it is not answered yet; wrong raises SelfCheckError."""
    check = CHECKS[name]
    if answer is None:
        print(f"Self-check {name}: not answered yet. Put your answer in `answer` above and run this cell again.")
        return None
    try:
        right = check.right(answer)
    except TypeError:
        right = False
    if not right:
        raise SelfCheckError(f"Self-check {name}: {answer!r} is not it. Think again: {check.why}.")
    print(f"Self-check {name}: right. {check.why[0].upper()}{check.why[1:]}.")
    return True
