"""Where each printed number's reproduction lives: one provider per section of reference-values.yaml.

A provider reads a profile's results files (or, for parameter counts, builds the model) and returns
the values our runs produced for one printed number, or the reason there are none.
"""

from __future__ import annotations

from pathlib import Path

from robustode.data.images import is_available
from robustode.models import build_model, count_parameters
from robustode.report import Printed, Reproduced, provider
from robustode.results import load_results
from robustode.tables import Markdown

DATA_MISSING = "data missing ({} not in the data folder)"
# The report is rendered on notebooks/06_report: the link is relative to that page.
REPRODUCING = "../book/reproducing.md"


def _device(runs: list[dict]) -> str:
    return ", ".join(sorted({r["provenance"]["device"].split(" (")[0] for r in runs}))


def _count(name: str, dataset: str) -> Reproduced:
    return Reproduced((float(count_parameters(build_model(name, dataset))),), exact=True)


def _no_results(results_dir: Path) -> str:
    if Path(results_dir).name == "full":
        return Markdown("no results file yet: this full-profile run needs GPU time it has not had "
                        f"(see [Reproducing]({REPRODUCING}))")
    return "no results file for this profile"


def _from_runs(runs: list[dict], values: list[float], dataset: str, results_dir: Path) -> Reproduced:
    if values:
        return Reproduced(tuple(values), _device(runs))
    if not is_available(dataset):
        return Reproduced(reason=DATA_MISSING.format(dataset))
    return Reproduced(reason=_no_results(results_dir))


ATTENTION_MODELS = {"Classic Attention": "ClassicAttention", "Neural ODE Attention": "ODEAttention"}


@provider("table_3_ode_attention")
def _table_3(printed: Printed, results_dir: Path) -> Reproduced:
    model, dataset, column = printed.key
    runs = [r for r in load_results(results_dir, "attention-table3")
            if r["params"]["model"] == ATTENTION_MODELS[model] and r["params"]["dataset"] == dataset
            and not r["metrics"].get("failure")]
    if column == "inference_time_s":
        # The paper states neither hardware nor batch: we hold it against our batch-1 median latency.
        values = [t["median_s"] for r in runs for t in r["metrics"].get("timings", []) if t["batch"] == 1]
    else:
        values = [r["metrics"][column] for r in runs]
    return _from_runs(runs, values, dataset, results_dir)


ANODE_PARAMETER_MODELS = {
    "NODE_92_filters": "ConvNODE", "ANODE_64_filters_p5": "ConvANODE",
    "NODE_125_filters": "ConvNODE", "ANODE_64_filters_p10": "ConvANODE",
}
# Parameter-count sections: (registered model name, dataset) from a printed number's key.
COUNTED = {
    "table_4_parameters": lambda key: (ATTENTION_MODELS[key[0]], key[1]),
    "anode_parameters": lambda key: (ANODE_PARAMETER_MODELS[key[1]], key[0]),
    "tisode_repo_parameters": lambda key: (key[1], key[0]),
}


def _counted(printed: Printed, results_dir: Path) -> Reproduced:
    return _count(*COUNTED[printed.section](printed.key))


for _section in COUNTED:
    provider(_section)(_counted)


@provider("anode_table_1")
def _anode_table_1(printed: Printed, results_dir: Path) -> Reproduced:
    from robustode.experiments.anode import experiment_name

    dataset, role = printed.key
    if dataset not in ("MNIST", "CIFAR10"):
        return Reproduced(reason=f"{dataset} is not part of the survey's ANODE figures; no experiment here")
    runs = load_results(results_dir, experiment_name(dataset))
    mine = [r for r in runs if r["params"]["model"] == r["params"]["table_1"][dataset][role] and not r["metrics"]["failure"]]
    values = [100 * r["metrics"]["test"]["accuracy"] for r in mine if r["metrics"]["test"]["accuracy"] is not None]
    return _from_runs(mine, values, dataset, results_dir)


def _robustness_values(results_dir: Path, dataset: str, key: str, model: str) -> Reproduced:
    from robustode.experiments import robustness

    kind, value = next((k, v) for ref_key, k, v in robustness.table_one_rows(dataset) if ref_key == key)
    runs = [r for r in load_results(results_dir, f"robustness-{dataset}") if r["params"]["model"] == model]
    values = [robustness.table_value(r["metrics"], kind, value) for r in runs]
    if values:
        return Reproduced(tuple(values), _device(runs))
    ok, reason = robustness.available(dataset)
    return Reproduced(reason=reason if not ok else _no_results(results_dir))


@provider("table_1_robustness")
def _table_1(printed: Printed, results_dir: Path) -> Reproduced:
    dataset, key, model = printed.key
    return _robustness_values(results_dir, dataset, key, model)


@provider("authors_mnist_fgsm_runs")
def _authors_runs(printed: Printed, results_dir: Path) -> Reproduced:
    # One logged run of the authors against the spread of all our seeds for the same model and attack.
    dataset, key, model, _run = printed.key
    return _robustness_values(results_dir, dataset, key, model)
