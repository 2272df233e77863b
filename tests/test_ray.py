"""The per-batch evaluation under Ray Data, in Ray's local mode: the same rows as gu.evaluate."""

import functools

import pandas as pd
import pytest
import ray

import gradcam_utils as gu
from gradcam_utils.dataset_evaluation import BatchEvaluator


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_data_map_batches_gives_the_rows_of_evaluate(local_ray):
    data = gu.shapes_dataset(6, seed=7)
    settings = {"methods": ["gradcam", "vanilla_backprop"], "metrics": ["pointing", "relevance_rank", "random_logit"]}
    items = [
        {"image": image.numpy(), "label": label, "mask": mask.numpy(), "index": i}
        for i, (image, label, mask) in enumerate(data)
    ]
    rows = ray.data.from_items(items).map_batches(
        BatchEvaluator,
        fn_constructor_kwargs={"load": functools.partial(gu.load_small_model, "shapes"), **settings},
        batch_size=4,
        batch_format="numpy",
        concurrency=1,
    )
    by_ray = pd.DataFrame(rows.take_all())
    expected = gu.evaluate(gu.load_small_model("shapes"), data, per_image=True, progress=False, **settings)
    key = ["method", "measure", "image"]
    by_ray = by_ray.astype({"image": int, "value": float}).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(by_ray[expected.columns], expected.sort_values(key).reset_index(drop=True))
