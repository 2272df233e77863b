"""Gradient-based visual explanations of CNN image classifiers: the helper behind the notebooks.

The modules, each importing only from those above it (README, "How the package is organised"):
- errors;
- vit, models, layers, baselines, shapes, small_models: what the methods are applied to;
- recording: the one recorded forward pass and its backward rules;
- pixel_rules, cam_family, noise_and_paths, occlusion: the method families;
- method_table: every method once; forward_pass: ForwardPass.maps and explain; methods: one function per method;
- evaluation, localisation, summary, dataset_evaluation, scorecard: checks of trust;
- display, explorer_base, explorer, topic_explorers, cli_common, cli_evaluate, cli: pictures, widgets, the command line;
- self_checks: the notebooks' questions.
"""

from .baselines import BASELINES, baseline
from .cam_family import cams
from .display import class_labels, gradient_image, heatmap, normalize, overlay, plot_grid
from .errors import GradCamError
from .evaluation import area_under, cascade_order, deletion_curve, insertion_curve, randomize_layers, spearman, ssim
from .explorer import Explorer, explore
from .forward_pass import ForwardPass, explain
from .layers import default_layer, get_layer, list_layers
from .localisation import pointing_game, relevance_mass, relevance_rank
from .method_table import ALL_METHODS, LAYER_METHODS, METHODS, TABLE, TITLES, Family, Method
from .methods import (
    cam,
    deconvnet,
    eigencam,
    gradcam,
    gradcam_pp,
    guided_backprop,
    guided_gradcam,
    hirescam,
    input_x_gradient,
    integrated_gradients,
    layercam,
    scorecam,
    smoothgrad,
    vanilla_backprop,
    xgradcam,
)
from .models import (
    CLASS_NAMES,
    EMBEDDED,
    class_index,
    deprocess,
    input_config,
    load_image,
    load_model,
    predict,
    preprocess,
)
from .occlusion import occlusion_sensitivity
from .recording import Recording, Rectifier, Rule
from .scorecard import evaluate
from .self_checks import SelfCheckError, self_check
from .shapes import SHAPE_CLASSES, shapes_dataset
from .small_models import SMALL_MODELS, load_small_model, train_small_model
from .summary import summarize
from .topic_explorers import explore_faithfulness, explore_occlusion, explore_randomization

__all__ = [
    # models, images and layers
    "CLASS_NAMES",
    "EMBEDDED",
    "GradCamError",
    "class_index",
    "default_layer",
    "deprocess",
    "get_layer",
    "input_config",
    "list_layers",
    "load_image",
    "load_model",
    "predict",
    "preprocess",
    # known answers: the shapes set and the small models trained on it
    "SHAPE_CLASSES",
    "shapes_dataset",
    "SMALL_MODELS",
    "load_small_model",
    "train_small_model",
    # baselines
    "BASELINES",
    "baseline",
    # the recorded forward pass and the method table
    "ForwardPass",
    "Recording",
    "Rectifier",
    "Rule",
    "ALL_METHODS",
    "LAYER_METHODS",
    "METHODS",
    "TABLE",
    "TITLES",
    "Family",
    "Method",
    # explanations
    "explain",
    "cams",
    "vanilla_backprop",
    "deconvnet",
    "guided_backprop",
    "input_x_gradient",
    "gradcam",
    "guided_gradcam",
    "smoothgrad",
    "integrated_gradients",
    "cam",
    "gradcam_pp",
    "xgradcam",
    "hirescam",
    "layercam",
    "scorecam",
    "eigencam",
    "occlusion_sensitivity",
    # trust
    "area_under",
    "cascade_order",
    "deletion_curve",
    "insertion_curve",
    "randomize_layers",
    "spearman",
    "ssim",
    "evaluate",
    "pointing_game",
    "relevance_mass",
    "relevance_rank",
    "summarize",
    # pictures and widgets
    "class_labels",
    "gradient_image",
    "heatmap",
    "normalize",
    "overlay",
    "plot_grid",
    "Explorer",
    "explore",
    "explore_faithfulness",
    "explore_occlusion",
    "explore_randomization",
    # the notebooks' self-checks
    "SelfCheckError",
    "self_check",
]
