"""Chapters 2-3 tables: rows built from one profile's results files only (Table I against the printed values,
strong attacks, sanity checks, solver transfer, defences, run summaries, steadiness, the authors' own checkpoints).

Every function takes the :class:`~robustode.store.Store` of the profile to show. A table with no stored runs
returns ``[]``; the chapter then says in one line why (:func:`why_empty`).
"""

from __future__ import annotations

from robustode.chapters.robustness import authors
from robustode.chapters.robustness.config import (
    CONTROLS,
    MAIN_MODELS,
    MODELS,
    TABLE_MODELS,
    controlled,
    eps_value,
    experiment_name,
    missing_reason,
    table_one_rows,
)
from robustode.core.evaluation import sanity_checks
from robustode.profiles import load_profile
from robustode.reference import Printed, printed, reference_values
from robustode.results import fmt_mean_sd, mean_sd, nearest, unpack_flags
from robustode.store import Store
from robustode.tables import flag
from robustode.verdict import Reproduced, row
from robustode.wording import device_label, fmt_seconds, not_run, plural


def _runs(store: Store, dataset: str, in_progress: bool = False) -> list[dict]:
    """Stored runs in model order (CNN, ODENet, TisODE, then the +denoise variants, then the controls), then by seed.
    ``in_progress``: also the runs whose evaluation has finished Table I's stages but not the strong attacks
    (:func:`robustode.chapters.robustness.run.in_progress`; for Table I and the comparisons built on it)."""
    runs = store.runs(experiment_name(dataset))
    if in_progress:
        from robustode.chapters.robustness.run import in_progress as going

        runs = runs + going(store, dataset)
    order = {name: i for i, name in enumerate(MODELS)}
    return sorted(runs, key=lambda r: (order.get(r["params"]["model"], len(order)), r["seed"]))


def _by_model(runs: list[dict], name: str) -> list[dict]:
    return [r["metrics"] for r in runs if r["params"]["model"] == name]


def why_empty(store: Store, dataset: str) -> str:
    """Why ``dataset`` has no runs in ``store``: its data are missing here, or its runs are pending in the plan."""
    return not_run(missing_reason(dataset) or store.pending())


def authors_why_empty(store: Store) -> str:
    """Why ``store`` shows no evaluation of the authors' checkpoints: its profile has no ``authors`` section (only
    ``full`` has), or the runs are pending, or the checkpoints are not given here."""
    if "authors" not in load_profile(store.profile):
        return (f"the {store.profile} profile does not evaluate the authors' checkpoints; the full profile does: "
                f"`python -m robustode run --profile full --only authors` with `{authors.ENV}` set to a clone of "
                f"{authors.REPOSITORY}")
    return not_run(authors.NOT_GIVEN if authors.checkpoint_root() is None else store.pending())


def device_of(runs: list[dict]) -> str:
    """The devices ``runs`` ran on ("cpu", "cpu and cuda"), and how many runs recorded none (partial files written
    before the device was kept): "cpu; 2 runs' device not recorded"."""
    devices = [r["provenance"]["device"].split(" (")[0] for r in runs]
    unknown = devices.count("not recorded")
    known = " and ".join(sorted(set(devices) - {"not recorded"}))
    if not unknown:
        return known
    missing = f"{plural(unknown, 'run')}'{'' if unknown > 1 else 's'} device not recorded"
    return f"{known}; {missing}" if known else f"device not recorded ({plural(unknown, 'run')})"


def table_value(metrics: dict, kind: str, value: str) -> float:
    """The Table I quantity of one run, in percent."""
    if kind == "gaussian":
        return 100 * metrics["noise"][str(float(value))]
    return 100 * metrics["faithful"][kind][value]


def report_values(p: Printed, store: Store) -> Reproduced:
    """Our values for a printed Table I number (or one of the authors' logged FGSM runs): one per seed; for the
    parameter counts of the authors' logs, the count of the model we build."""
    if p.section == "tisode_repo_parameters":
        from robustode.models import build_model, count_parameters

        dataset, model = p.key
        return Reproduced((float(count_parameters(build_model(model, dataset))),), store.profile, exact=True)
    dataset, key, model = p.key[:3]
    kind, value = next((k, v) for ref_key, k, v in table_one_rows(dataset) if ref_key == key)
    if p.section == "authors_mnist_fgsm_runs" and p.key[3] == authors.RELEASED_RUN:
        if (found := authors.evaluations(store).get(model)) and "faithful" in found["metrics"]:
            # the very checkpoint of that logged run: the same 1,000 images, so the log's one decimal is a count of
            # images and the two are compared exactly (to the image)
            m = found["metrics"]
            images = m["attack_images"]
            robust = round(m["faithful"][kind][value] * images)
            return Reproduced((round(100 * robust / images, 1),), store.profile, device_of([found]), exact=True,
                              extra={"images": images, "source": "the authors' checkpoint"})
    runs = [r for r in _runs(store, dataset, in_progress=True) if r["params"]["model"] == model]
    values = tuple(table_value(r["metrics"], kind, value) for r in runs)
    if not values and p.section == "table_1_robustness":
        # no runs of our own in this profile: the authors' released checkpoint (trained with the printed protocol,
        # one of Table I's three runs) evaluated here is the next best evidence for the printed number
        found = authors.evaluations(store).get(model) if dataset == "MNIST" else None
        if found and ("noise" if kind == "gaussian" else "faithful") in found["metrics"]:
            return Reproduced((table_value(found["metrics"], kind, value),), store.profile, device_of([found]),
                              extra={"source": "the authors' checkpoint"})
    if not values:
        return Reproduced(reason=why_empty(store, dataset).removeprefix("not run: "))
    return Reproduced(values, store.profile, device_of(runs))


def table_one(store: Store, dataset: str, models: tuple[str, ...] = TABLE_MODELS) -> list[dict]:
    """Table I rows for a data set: printed value, ours (mean ± sd over seeds), the difference with its 95 %
    interval and the verdict (:mod:`robustode.verdict`); ``[]`` when no model has runs. Runs whose evaluation is
    still in progress count once Table I's stages are done."""
    runs = _runs(store, dataset, in_progress=True)
    if not any(r["params"]["model"] in models for r in runs):
        return []
    rows = []
    for key, kind, value in table_one_rows(dataset):
        label = f"σ = {value}" if kind == "gaussian" else f"{kind.upper()}-{value}"
        for name in models:
            r = row(printed("table_1_robustness", dataset, key, name), report_values(
                printed("table_1_robustness", dataset, key, name), store), label=label, context=False)
            rows.append({"perturbation": r.pop("quantity"), "model": name, **r})
    return rows


def strong_table(store: Store, dataset: str, models: tuple[str, ...] = TABLE_MODELS) -> list[dict]:
    """Faithful PGD beside strong PGD and AutoAttack at Table I's PGD epsilons (%, mean ± sd over seeds)."""
    runs = _runs(store, dataset)
    rows = []
    for _, kind, eps in table_one_rows(dataset):
        if kind != "pgd":
            continue
        for name in models:
            mine = _by_model(runs, name)
            if not mine:
                continue
            strong = [m["strong"][eps] for m in mine]
            aa = [s["autoattack"] for s in strong if "autoattack" in s]
            rows.append({
                "eps": eps, "model": name,
                "faithful PGD": fmt_mean_sd([100 * m["faithful"]["pgd"][eps] for m in mine]),
                "strong PGD": fmt_mean_sd([100 * s["accuracy"] for s in strong]),
                "AutoAttack": fmt_mean_sd([100 * a["accuracy"] for a in aa]) if aa else not_run(),
                "images (faithful / strong / AA)": f"{mine[0]['attack_images']} / {strong[0]['images']} / "
                                                   + (str(aa[0]["images"]) if aa else "—"),
            })
    return rows


def strong_settings(store: Store, dataset: str) -> str:
    """One sentence: how the strong attacks of ``store``'s runs were configured."""
    runs = _runs(store, dataset)
    if not runs:
        return ""
    strong = next(iter(runs[0]["metrics"]["strong"].values()))
    aa = strong.get("autoattack")
    return (f"Strong PGD: cross-entropy, random start, {plural(strong['steps'], 'step')} × "
            f"{plural(strong['restarts'], 'restart')} on {strong['images']} images"
            + (f"; AutoAttack ({aa['config']}) on the first {aa['images']} of them." if aa else "; no AutoAttack."))


def checks_of(run: dict) -> list[dict]:
    """The sanity checks of a stored run, judged now by :func:`robustode.core.evaluation.sanity_checks` (the rule lives
    in code, the measurements in the results file)."""
    return sanity_checks(run["metrics"], run["params"]["sanity"]["tolerance"])


def sanity_table(store: Store, dataset: str, models: tuple[str, ...] = MAIN_MODELS) -> list[dict]:
    """Every check of every run; a failed one in red (:func:`robustode.tables.flag`)."""
    rows = []
    for r in _runs(store, dataset):
        if r["params"]["model"] not in models:
            continue
        for c in checks_of(r):
            rows.append({"model": r["params"]["model"], "seed": r["seed"], "check": c["check"],
                         "result": flag(c["ok"], ("passed: " if c["ok"] else "") + c["detail"])})
    return rows


def failed_checks(store: Store, dataset: str) -> list[str]:
    return [f"{r['params']['model']} seed {r['seed']}: {c['check']} ({c['detail']})"
            for r in _runs(store, dataset) for c in checks_of(r) if not c["ok"]]


def solver_transfer_table(store: Store, dataset: str, models: tuple[str, ...] = MAIN_MODELS) -> list[dict]:
    """Accuracy (%) of faithful PGD crafted through one solver (rows: an Euler step, or a model's deployed adaptive
    method) and judged with another (seed 0)."""
    rows = []
    for r in _runs(store, dataset):
        st = r["metrics"].get("sanity", {}).get("solver_transfer")
        if not st or r["seed"] != 0 or r["params"]["model"] not in models:
            continue
        for craft, judged in st["accuracy"].items():
            rows.append({"model": f"{r['params']['model']} (deployed step {st['deployed_step']})",
                         "crafted with step": craft,
                         **{f"judged at {j}": f"{100 * a:.1f}" for j, a in judged.items()}})
    return rows


def authors_spread(store: Store, models: tuple[str, ...] = TABLE_MODELS) -> list[dict]:
    """The authors' own three logged FGSM runs per MNIST model beside the printed value and ours (one per seed; a
    run whose evaluation is in progress counts once its faithful stage is done, as in Table I)."""
    logged = reference_values()["authors_mnist_fgsm_runs"]
    runs = _runs(store, "MNIST", in_progress=True)
    rows = []
    for key, per_model in logged.items():
        eps = key.removeprefix("fgsm_")
        for name, values in per_model.items():
            if name not in models:
                continue
            ours = [100 * m["faithful"]["fgsm"][eps] for m in _by_model(runs, name) if eps in m["faithful"]["fgsm"]]
            mean, sd, _ = mean_sd(values)
            p = reference_values()["table_1_robustness"]["MNIST"][key][name]
            rows.append({"attack": f"FGSM-{eps}", "model": name, "authors' runs": ", ".join(f"{v:.1f}" for v in values),
                         "authors' mean ± sd": f"{mean:.1f} ± {sd:.1f}", "printed": f"{p[0]:.1f} ± {p[1]:.1f}",
                         f"ours ({store.profile})": ", ".join(f"{v:.1f}" for v in ours) or why_empty(store, "MNIST")})
    return rows


def defence_table(store: Store, dataset: str = "MNIST") -> list[dict]:
    """Sec. 5.3: each model alone, with feature denoising, with input randomisation (%, mean ± sd over seeds). Runs
    still in their evaluation count once Table I's stages are done (strong PGD not yet run reads "pending")."""
    runs = _runs(store, dataset, in_progress=True)
    rows = []
    for name in MAIN_MODELS:
        mine = _by_model(runs, name)
        if not mine:
            continue
        variants = [(name, mine)]
        rand = [m["randomised"] for m in mine if "randomised" in m]
        if rand:
            variants.append((f"{name} + input randomisation", rand))
        for label, ms in variants:
            if label != name and (paired := _equal_attack_row(name, mine, dataset)):
                rows.append(paired)
            entry = {"model": label, "clean": fmt_mean_sd([100 * m["clean"] for m in ms])}
            for _, kind, value in table_one_rows(dataset):
                if kind == "gaussian":
                    entry[f"σ = {value}"] = fmt_mean_sd([100 * m["noise"][str(float(value))] for m in ms])
                else:
                    entry[f"{kind.upper()}-{value}"] = fmt_mean_sd([100 * m["faithful"][kind][value] for m in ms])
            for eps in [v for _, k, v in table_one_rows(dataset) if k == "pgd"]:
                entry[f"strong PGD-{eps}"] = _strong_cell(ms, eps)
            rows.append(entry)
    return rows


def _flags(metrics: dict, kind: str, eps: str) -> list[bool] | None:
    packed = metrics.get("faithful_flags", {}).get(kind, {}).get(eps)
    return unpack_flags(packed) if packed else None


def per_image_defence(metrics: dict, defended: dict, dataset: str = "MNIST") -> dict[str, tuple[list[bool], list[bool]]]:
    """Per attack label, the per-image flags of one model without and with input randomisation on the images the
    randomised evaluation attacked (the first ``images`` of the shared attack set): the faithful attacks at ``dataset``'s
    Table I epsilons (the plain model's flags from its main evaluation, ``metrics``) and the strong PGD at an equal attack
    (the same steps, restarts and random starts; :func:`~robustode.chapters.robustness.run.same_attack_without_defence`).
    ``defended``: metrics holding ``randomised`` and ``without_defence`` (a seed's own, or an authors' unit's);
    ``{}`` for a randomised stage stored before the equal attack was part of it."""
    if "randomised" not in defended or "without_defence" not in defended:
        return {}
    rand = defended["randomised"]
    plain_strong = defended["without_defence"]["strong"]
    n = rand["images"]
    out = {}
    for _, kind, eps in table_one_rows(dataset):
        if kind == "gaussian":
            continue
        plain, mine = _flags(metrics, kind, eps), _flags(rand, kind, eps)
        if plain is not None and mine is not None:
            out[f"{kind.upper()}-{eps}"] = (plain[:n], mine)
    for eps, result in rand["strong"].items():
        if eps in plain_strong:
            out[f"strong PGD-{eps}"] = (unpack_flags(plain_strong[eps]["flags"]), unpack_flags(result["flags"]))
    return out


def _equal_attack_row(name: str, runs: list[dict], dataset: str) -> dict | None:
    """``name`` on the images its randomised copy was attacked on, under the same attacks (faithful, and the strong
    PGD of the ``defences`` section), mean ± sd over seeds; ``None`` unless every randomised run holds that."""
    pairs = [per_image_defence(m, m, dataset) for m in runs if "randomised" in m]
    if not pairs or not all(pairs):
        return None
    row = {"model": f"{name}, same images and attacks as the row below"}
    for attack in pairs[0]:
        row[attack] = fmt_mean_sd([100 * sum(p[attack][0]) / len(p[attack][0]) for p in pairs])
    return row


def curves(store: Store, dataset: str, models: tuple[str, ...] = TABLE_MODELS) -> dict[str, dict]:
    """Per model: mean accuracy (%) vs sigma and vs eps (FGSM, PGD), averaged over seeds, for the plots."""
    runs = _runs(store, dataset)
    out = {}
    for name in models:
        mine = _by_model(runs, name)
        if not mine:
            continue
        entry = {"noise": {}, "fgsm": {}, "pgd": {}, "runs": len(mine)}
        for s in mine[0]["noise"]:
            entry["noise"][float(s)] = mean_sd([100 * m["noise"][s] for m in mine])[:2]
        for kind in ("fgsm", "pgd"):
            for eps in mine[0]["faithful"][kind]:
                entry[kind][eps_value(eps)] = mean_sd([100 * m["faithful"][kind][eps] for m in mine])[:2]
        out[name] = entry
    return out


def run_summary(store: Store, dataset: str, models: tuple[str, ...] = MAIN_MODELS) -> list[dict]:
    """Per run: parameters, epochs, selected epoch, validation and clean test accuracy, training time, and whether
    its evaluation is done or which stages are left."""
    rows = []
    for r in _runs(store, dataset, in_progress=True):
        m, p = r["metrics"], r["params"]
        if p["model"] not in models:
            continue
        epochs = m["history"]["epochs"]
        best = m["history"]["best_epoch"]
        together = max((e.get("concurrent_runs", 1) for e in epochs), default=1)
        rows.append({"model": p["model"], "seed": r["seed"], "parameters": f"{m['parameters']:,}",
                     "epochs (selected)": f"{len(epochs)} ({best})" if best else str(len(epochs)),
                     "val. acc. % (noisy)": f"{100 * epochs[best - 1]['val_noisy_accuracy']:.1f}" if best else "—",
                     "clean test acc. %": f"{100 * m['clean']:.1f}",
                     "train time": f"{sum(e['seconds'] for e in epochs) / 60:.0f} min"
                                   + (f" ({together} seeds at once)" if together > 1 else ""),
                     "evaluation": "done" if "partial" not in r else f"in progress: {', '.join(r['partial']['left'])} left"})
    return rows


def trained_with(store: Store, dataset: str) -> str:
    """One sentence naming how the profile's runs were trained: trainer, device, width, epochs."""
    runs = _runs(store, dataset)
    if not runs:
        return ""
    trainers = sorted({r["metrics"].get("trainer", "plain") for r in runs})
    devices = sorted({r["provenance"]["device"] for r in runs})
    p = runs[0]["params"]
    return (f"{plural(len(runs), 'run')} of width {p['width']}, {plural(p['epochs'], 'epoch')} each, trained with the "
            f"{' / '.join(trainers)} loop on {'; '.join(devices)}.")


def settling(store: Store, dataset: str = "MNIST", device: str = "cpu") -> dict[str, dict]:
    """The mean |f(z(t))| profiles chapter 3 shows for ``store``: the authors' ODE checkpoints' (MNIST; stored by
    their evaluation), then seed 0 of each of the profile's own ODE models, controls included (stored by its sanity
    stage, or computed now from its committed model: :func:`robustode.chapters.robustness.run.field_profiles_now`)."""
    from robustode.chapters.robustness.run import field_profiles_now

    own = field_profiles_now(store, dataset, device)
    return {**(authors.field_profiles(store) if dataset == "MNIST" else {}),
            **{f"{name} (seed 0)": prof for name, prof in own.items()}}


def field_at(profile: dict, when: float) -> float:
    """A field profile's mean |f| at the stored time nearest ``when``."""
    return profile["mean_abs_f"][nearest(profile["t"], when)]


def steadiness_rows(profiles: dict[str, dict]) -> list[dict]:
    """Mean |f(z(t))| at t = 0, T = 1 and 2T per profile of :func:`settling`: a steady state would bring it near 0
    after T (a ratio 2T / T near 0); a ratio near 1 is a state still moving as fast as at the read-out."""
    rows = []
    for name, prof in profiles.items():
        f0, f1, f2 = (field_at(prof, when) for when in (0.0, 1.0, 2.0))
        rows.append({"model": name, "mean ∣f∣ at t = 0": f"{f0:.3f}", "at T = 1": f"{f1:.3f}", "at 2T = 2": f"{f2:.3f}",
                     "ratio 2T / T": f"{f2 / f1:.2f}", "profile": prof.get("source", "stored")})
    return rows


def readout_rows(read: dict[str, dict]) -> list[dict]:
    """Per model of chapter 3's read-outs (:func:`robustode.chapters.robustness.readout.results`): clean accuracy at
    T and at 2T, the share of decisions at 2T that equal those at T, and per PGD eps the accuracy of the images
    crafted at T read out at T and at 2T, with the change and its 95 % interval (paired bootstrap over the images)."""
    from robustode.chapters.robustness.readout import change, index_of

    rows = []
    for name, m in read.items():
        at_t, at_2t = index_of(m, 1.0), index_of(m, 2.0)
        row = {"model": name, "images": m["images"], "clean at T": f"{100 * m['clean']['accuracy'][at_t]:.1f}",
               "clean at 2T": f"{100 * m['clean']['accuracy'][at_2t]:.1f}",
               "decisions kept at 2T": f"{100 * m['clean']['agreement'][at_2t]:.1f}"}
        for eps, entry in m["pgd"].items():
            row[f"PGD-{eps} at T"] = f"{100 * entry['accuracy'][at_t]:.1f}"
            row[f"PGD-{eps} read at 2T"] = f"{100 * entry['accuracy'][at_2t]:.1f}"
            row[f"PGD-{eps} change"] = change(m, eps).text()
        rows.append(row)
    return rows


def _control_cells(mine: list[dict], dataset: str) -> dict[str, str]:
    """Clean accuracy, Table I's perturbations (faithful) and strong PGD at Table I's PGD eps: mean ± sd (n), %."""
    cells = {"clean": fmt_mean_sd([100 * m["clean"] for m in mine])}
    for _, kind, value in table_one_rows(dataset):
        label = f"σ = {value}" if kind == "gaussian" else f"{kind.upper()}-{value}"
        cells[label] = fmt_mean_sd([table_value(m, kind, value) for m in mine])
    for eps in [v for _, k, v in table_one_rows(dataset) if k == "pgd"]:
        cells[f"strong PGD-{eps}"] = _strong_cell(mine, eps)
    return cells


def _strong_cell(mine: list[dict], eps: str) -> str:
    """Strong PGD at ``eps``, mean ± sd over the runs that have run it; "pending" when runs exist and none has."""
    have = [100 * m["strong"][eps]["accuracy"] for m in mine if eps in m.get("strong", {})]
    return fmt_mean_sd(have) if have or not mine else "pending"


def controls_table(store: Store, dataset: str) -> list[dict]:
    """Each control (issue 13) beside the model it controls: clean accuracy, Table I's perturbations with Yan et
    al.'s faithful attacks (MNIST: σ = 100, FGSM-0.3 / 0.5, PGD-0.2 / 0.3) and strong PGD at Table I's PGD
    epsilons, % as mean ± sd over seeds with n, the parameter count, what the control changes and how many of its
    runs' sanity checks failed. Runs still in their evaluation count once Table I's stages are done (their seed says
    "in progress"; strong PGD not yet run reads "pending", unchecked runs are not counted as passing). Grouped by
    the controlled model, which comes first ("not run" where it has no runs yet); ``[]`` when no control has runs."""
    from robustode.models import model_spec

    runs = _runs(store, dataset, in_progress=True)
    present = [c for c in CONTROLS if _by_model(runs, c)]
    rows = []
    for reference in dict.fromkeys(controlled(c) for c in present):
        for name in (reference, *(c for c in present if controlled(c) == reference)):
            mine = _by_model(runs, name)
            mine_runs = [r for r in runs if r["params"]["model"] == name]
            checked = [r for r in mine_runs if "sanity" in r["metrics"]]
            failed = sum(not c["ok"] for r in checked for c in checks_of(r))
            sanity = str(failed) if checked else "—"
            if checked and len(checked) < len(mine_runs):
                sanity += f" ({len(checked)} of {len(mine_runs)} runs checked)"
            rows.append({
                "model": name, "controls": "" if name == reference else reference,
                "what differs": "" if name == reference else model_spec(name).description.removeprefix("control: "),
                "parameters": f"{mine[0]['parameters']:,}" if mine else "—",
                "seeds": ", ".join(f"{r['seed']}{' (in progress)' if 'partial' in r else ''}" for r in mine_runs)
                or why_empty(store, dataset),
                **_control_cells(mine, dataset),
                "failed sanity checks": sanity,
            })
    return rows


def _authors_cells(label: str, value: float | None, images: int | None, printed_as: Printed | None = None,
                   reproduced: Reproduced | None = None, log: float | None = None) -> dict[str, str]:
    """One quantity of :func:`authors_table`: judged against ``printed_as`` by :func:`robustode.verdict.row` where
    Table I prints it, else only shown; beside the authors' log (their run 1) with the difference in images."""
    if printed_as is not None and reproduced is not None:
        cells = row(printed_as, reproduced, label=label, context=False)
    else:
        cells = {"quantity": label, "printed": "—", "reproduced": "—" if value is None else f"{value:.1f}",
                 "difference [95 % CI]": "—", "verdict": "—"}
    diff = "—"
    if log is not None and value is not None and images:
        diff = f"{round((value - log) * images / 100):+d}"
    return {**cells, "images": str(images) if images else "—", "authors' log, run 1": "—" if log is None else f"{log:.1f}",
            "here − log (images)": diff}


def authors_table(store: Store) -> list[dict]:
    """Yan et al.'s own trained MNIST models evaluated here (experiment ``authors-MNIST`` of ``store``; models and
    extra eps from its profile's ``authors`` section, ``[]`` for a profile without one). Per model: clean and
    Gaussian-noise accuracy, the faithful FGSM / PGD, strong PGD and AutoAttack, the number of images behind each
    figure and the sanity checks. Where Table I prints a number the row is judged against it with the one rule
    (:func:`robustode.verdict.row`; one checkpoint is one run, so n = 1); the FGSM rows also stand beside the
    authors' log of these very checkpoints (``sharing_MNIST_FGSM.txt``, run 1) with the difference counted in
    images. Accuracies in %. An evaluation still in progress shows the stages it has finished and a line saying
    which are left (:func:`robustode.chapters.robustness.authors.evaluations`)."""
    if "authors" not in load_profile(store.profile):
        return []
    settings = authors.config(store.profile)
    extra = {str(e) for e in settings.get("extra_fgsm_eps", ())}
    runs = authors.evaluations(store)
    table = {(kind, value): key for key, kind, value in table_one_rows("MNIST")}
    logged = reference_values()["authors_mnist_fgsm_runs"]
    rows: list[dict] = []
    for name in settings["models"]:
        if name not in runs:
            why = authors.requires(authors.checkpoint_path(settings, name)) or store.pending()
            rows.append({"model": name, **_authors_cells("—", None, None), "verdict": not_run(why)})
            continue
        run = runs[name]
        m = run["metrics"]

        def add(label: str, value: float, images: int, kind: str = "", at: str = "", log: float | None = None,
                name: str = name, run: dict = run) -> None:
            key = table.get((kind, at))
            p = printed("table_1_robustness", "MNIST", key, name) if key else None
            got = Reproduced((value,), store.profile, device_of([run])) if p else None
            rows.append({"model": name, **_authors_cells(label, value, images, p, got, log)})

        if "noise" in m:
            noise_images = m["noise_images"] or 10_000
            add("clean", 100 * m["clean"], noise_images)
            for sigma, acc in sorted(m["noise"].items(), key=lambda kv: float(kv[0])):
                add(f"σ = {float(sigma):g}", 100 * acc, noise_images, "gaussian", f"{float(sigma):g}")
        for kind in ("fgsm", "pgd") if "faithful" in m else ():
            for eps, acc in sorted(m["faithful"][kind].items(), key=lambda kv: eps_value(kv[0])):
                log = logged.get(f"{kind}_{eps}", {}).get(name)
                if (kind, eps) not in table and log is None and not (kind == "fgsm" and eps in extra):
                    continue  # the other points of the eps curves: in the results file, not in this comparison
                add(f"{kind.upper()}-{eps}", 100 * acc, m["attack_images"], kind, eps, log[0] if log else None)
        for eps, strong in m.get("strong", {}).items():
            add(f"strong PGD-{eps} ({strong['steps']} steps × {strong['restarts']} restarts)", 100 * strong["accuracy"],
                strong["images"])
            if "autoattack" in strong:
                aa = strong["autoattack"]
                add(f"AutoAttack-{eps} ({aa['config']})", 100 * aa["accuracy"], aa["images"])
        if "partial" in run:
            rows.append({"model": name, **_authors_cells("evaluation in progress", None, None),
                         "verdict": f"stages done: {', '.join(run['partial']['done'])}; "
                                    f"left: {', '.join(run['partial']['left'])}"})
            continue
        failed = [c["check"] for c in checks_of(run) if not c["ok"]]
        rows.append({"model": name, **_authors_cells("sanity checks", None, None),
                     "verdict": f"{plural(len(checks_of(run)), 'check')} passed" if not failed
                     else "failed: " + "; ".join(failed)})
    return rows


def compute_table(store: Store, dataset: str = "MNIST") -> list[dict]:
    """What each planned run of the profile has cost so far, as its records say: training (epochs done and their
    time), every evaluation stage (finished, under way with the pieces stored, or not started), the total and the
    device. Read from the results file, else the model file or training checkpoint and the partial evaluation;
    runs not started are left out. ``[]`` for a profile that plans no runs on ``dataset``."""
    from robustode.chapters.robustness.config import run_params, training_params
    from robustode.chapters.robustness.run import evaluation_stages, planned_runs
    from robustode.units import checkpoint_payload

    try:
        planned = planned_runs(store.profile).get(dataset, [])
    except (KeyError, ValueError):
        return []
    experiment = experiment_name(dataset)
    stage_names = list(dict.fromkeys(s for _, name, cfg, _ in planned for s in evaluation_stages(name, cfg)))
    rows = []
    for seed, name, cfg, _ in planned:
        run, params, tparams = f"{name}-seed{seed}", run_params(name, cfg), training_params(name, cfg)
        stored = store.run(experiment, run, params)
        partial = {} if stored else store.load_partial(experiment, run, params)
        trained = stored["metrics"] if stored else store.load_model(experiment, run, tparams)
        if trained is None:
            trained = checkpoint_payload(store.checkpoint(experiment, run, tparams)) or {}
        epochs = [e.get("seconds", 0.0) for e in (trained.get("history") or {}).get("epochs", [])]
        if not epochs and not partial:
            continue
        total = sum(epochs)
        finished = len(epochs) == cfg["epochs"]
        training = f"{len(epochs)} epochs, {fmt_seconds(total)}" if finished else (
            f"epoch {len(epochs)} of {cfg['epochs']}: {fmt_seconds(total)} so far")
        row = {"model": name, "seed": seed, "training": training}
        seconds = stored["metrics"].get("seconds", {}) if stored else {}
        own = evaluation_stages(name, cfg)
        for stage in stage_names:
            if stage not in own:
                row[stage] = ""
            elif stage in seconds or isinstance(partial.get(stage), dict):
                spent = seconds[stage] if stage in seconds else partial[stage].get("seconds", 0.0)
                total += spent
                row[stage] = fmt_seconds(spent)
            elif pieces := partial.get(f"{stage} (pieces)"):
                spent = sum(p.get("seconds", 0.0) for p in pieces.values())
                total += spent
                row[stage] = f"under way: {plural(len(pieces), 'piece')}, {fmt_seconds(spent)}"
            else:
                row[stage] = "—"
        row["so far"] = fmt_seconds(total)
        row["state"] = "done" if stored else "evaluating" if finished else "training"
        row["device"] = device_label(stored["provenance"]["device"] if stored else partial.get("device", "not recorded"))
        rows.append(row)
    return rows
