"""Gradient-based visual explanations of CNN image classifiers: the helper behind the notebooks.

Read in this order: models.py (models, images, layers), methods.py (the five methods and
their hooks), noise_and_paths.py (SmoothGrad, Integrated Gradients), cam_family.py (CAM, Grad-CAM and its successors), display.py (maps -> pictures),
explorer.py and topic_explorers.py (the notebooks' widgets), cli.py, evaluation.py (occlusion, sanity checks, faithfulness), scorecard.py (every method through the same tests: evaluate).
"""

from .evaluation import area_under, cascade_order, deletion_curve, insertion_curve, occlusion_sensitivity, randomize_layers, spearman, ssim
from .display import class_labels, gradient_image, heatmap, normalize, overlay, plot_grid
from .explorer import Explorer, explore
from .methods import (
    ALL_METHODS,
    LAYER_METHODS,
    METHODS,
    ForwardPass,
    Rectifier,
    deconvnet,
    explain,
    gradcam,
    guided_backprop,
    guided_gradcam,
    input_x_gradient,
    vanilla_backprop,
)
from .cam_family import cam, eigencam, gradcam_pp, hirescam, layercam, scorecam, xgradcam
from .scorecard import evaluate
from .topic_explorers import explore_faithfulness, explore_occlusion, explore_randomization
from .noise_and_paths import integrated_gradients, smoothgrad
from .self_checks import SelfCheckError, self_check
from .models import (
    CLASS_NAMES,
    EMBEDDED,
    GradCamError,
    class_index,
    default_layer,
    deprocess,
    get_layer,
    input_config,
    list_layers,
    load_image,
    load_model,
    predict,
    preprocess,
)
