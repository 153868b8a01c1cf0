"""Printing errors and protocol gaps in the survey, each with evidence computed from data.

Numeric evidence is computed here from ``reference-values.yaml`` (the printed numbers) and, where a
chapter measured something, from that chapter's results files; textual errata cite the equation or
caption. The report chapter renders :func:`table_checks` and :func:`log_vs_table`.
"""

from __future__ import annotations

from robustode.reference import reference_values
from robustode.results import mean_sd
from robustode.tables import Markdown


def log_vs_table() -> list[dict]:
    """Yan et al.'s public per-run FGSM log (3 runs) against the Table I value the survey prints."""
    ref = reference_values()
    rows = []
    for attack, models in ref["authors_mnist_fgsm_runs"].items():
        for model, runs in models.items():
            mean, sd, n = mean_sd(runs)
            printed, pm = ref["table_1_robustness"]["MNIST"][attack][model]
            # If Table I were these three runs, the two would agree within rounding (0.05).
            rows.append({
                "attack": attack, "model": model, "runs in the log": ", ".join(f"{v:.1f}" for v in runs),
                "log mean ± sd": f"{mean:.1f} ± {sd:.1f}", "Table I": f"{printed:.1f} ± {pm:.1f}",
                "log - Table I": round(mean - printed, 2),
                "same runs (within rounding)": "yes" if abs(mean - printed) <= 0.05 + 1e-9 else "no",
                "within the printed ±": "yes" if abs(mean - printed) <= pm else "no",
            })
    return rows


def table_3_identities() -> list[dict]:
    """Facts of the printed Table III that the numbers themselves establish."""
    t3 = reference_values()["table_3_ode_attention"]
    cols = t3["columns"]
    col = {name: cols.index(name) for name in cols}
    ode, classic = t3["Neural ODE Attention"], t3["Classic Attention"]
    rows = []
    same = [c for c in cols if ode["MNIST"][col[c]] == ode["FashionMNIST"][col[c]]]
    diffs = {c: abs(ode["MNIST"][col[c]] - ode["FashionMNIST"][col[c]]) for c in cols if c != "inference_time_s"}
    rows.append({
        "check": "Neural ODE Attention: MNIST row vs FashionMNIST row",
        "evidence": f"identical columns: {', '.join(same)}; largest other metric gap {max(diffs.values()):.4f}",
        "reading": "not a plain copy (the other columns differ slightly), but exactly 8,874 of 10,000 right on two data "
                   "sets of different difficulty is a coincidence one would not expect; a mixed-up data set or a "
                   "copy-and-edit would explain it (chapter 4 reads it the same way)",
    })
    equal = [f"{m} / {d}" for m, rows_ in (("ODE", ode), ("Classic", classic)) for d, v in rows_.items()
             if v[col["recall"]] == v[col["accuracy"]]]
    rows.append({
        "check": "recall equals accuracy",
        "evidence": f"{len(equal)} of 8 rows",
        "reading": "support-weighted recall is identical to accuracy, so the table uses weighted averaging "
                   "(not stated in the paper)",
    })
    for name, table in (("Neural ODE Attention", ode), ("Classic Attention", classic)):
        times = [v[col["inference_time_s"]] for v in table.values()]
        rows.append({
            "check": f"{name}: inference time across data sets",
            "evidence": f"{min(times):.4f}-{max(times):.4f} s (max/min {max(times) / min(times):.2f})",
            "reading": "near-constant although CIFAR-100 rows are longer than MNIST rows and the heads differ: "
                       "a fixed overhead, not computation, dominates the printed times",
        })
    return rows


def table_4_hidden_sizes() -> list[dict]:
    """Hidden sizes implied by Table IV: CIFAR-100 minus CIFAR-10 = 90 (hidden + 1) for a Linear decoder."""
    t4 = reference_values()["table_4_parameters"]
    rows = []
    for model, counts in t4.items():
        extra_classes = counts["CIFAR100"] - counts["CIFAR10"]
        wider_rows = counts["CIFAR10"] - counts["MNIST"]
        rows.append({
            "model": model, "CIFAR100 - CIFAR10": extra_classes, "implied hidden": extra_classes / 90 - 1,
            "CIFAR10 - MNIST": wider_rows, "= 4 x hidden": wider_rows == 4 * (extra_classes / 90 - 1),
            "MNIST = FashionMNIST": counts["MNIST"] == counts["FashionMNIST"],
        })
    return rows


# Markdown cells: the formulas are maths ($...$, never "|" inside a table cell: \lvert, \rvert).
TEXTUAL = [
    ("Eq. (5)", "Meant to be TisODE's time-invariant dynamics, it still writes $f(h(t), t, \\Theta)$: the $t$ must go "
     "(our TisODE field ignores $t$, and a test checks it)."),
    ("Eq. (6)", "Written as $\\sum_i \\lvert\\int_T^{2T} f(z_i(t))\\,dt\\rvert$. The authors' code integrates $\\lvert f\\rvert$ "
     "(absolute value inside) over $[0.9, 1.5]$ for $T = 1$, and averages over elements; we follow the code."),
    ("Eqs. (10)-(11)", "Eq. (10) defines the attention weights as $\\mathrm{softmax}(QK^\\top/\\sqrt{d_k})\\,V$ and Eq. (11) "
     "multiplies by $V$ again ($C_t = AV$): $V$ is applied twice. The weights are $\\mathrm{softmax}(QK^\\top/\\sqrt{d_k})$ alone."),
    ("Sec. 3 (ANODE)", "'The augmented flow is not restricted by the homeomorphism constraint': it still is a homeomorphism, of "
     "$\\mathbb{R}^{d+p}$. What escapes the constraint is its projection back to $\\mathbb{R}^d$ (the read-out), which need not "
     "be injective; that is why ANODEs can fit what NODEs cannot."),
    ("Sec. 5, robustness", "'The uniqueness of ODE solutions ... ensuring bounded output deviations' is false: uniqueness keeps "
     "trajectories apart but bounds nothing; Grönwall's inequality allows deviations to grow as $e^{LT}$ with the field's "
     "Lipschitz constant $L$."),
    ("Sec. 5, robustness", "'ANODEs further enhance this inherent robustness' is asserted without any experiment in the survey "
     "or in its cited sources; chapter 3's controls test it."),
    ("References", "[27] is cited ('[2,27]') but the list ends at [26]. [25] (Carlini & Wagner, an attack paper) and [26] "
     "(Athalye et al., which shows that such defences give a false sense of security) are cited as support for the robustness "
     "of ODE solutions, the opposite of what they show. [14] (Kingma & Ba, Adam) is cited for mixed-precision training "
     "(Micikevicius et al. 2018 is the source). [23] (Hamiltonian generative networks) is cited for ANODEs (Dupont et al. "
     "2019, the survey's [7], is the source)."),
    ("Table I caption", "Truncated mid-sentence: '... the improvement brought by TisODE towards'."),
    ("Table I", "Introduced as 'we follow the setting of Yan et al. (2020)', but every entry equals Yan et al.'s own table: "
     "it is re-reported, not re-run. The original kept the checkpoint with the best accuracy on the noisy *test* set (model "
     "selection on test data); we select on a validation split."),
    ("Table I attacks", "The original counts an image as broken if any evaluated iterate, the clean image included, is "
     "misclassified; its '10-iteration' PGD evaluates nine updates; its loss is a clamped margin, not cross-entropy; no "
     "random start. The robustness chapters run this faithfully and beside it PGD with restarts and AutoAttack."),
    ("Table I, ImgNet10", "The ten ImageNet classes are not published, so that row cannot be reproduced exactly."),
    ("Fig. 2 caption", "'mapping 1 to 1 (red) and 1 to 1 (blue)' lost its minus signs: the maps are $-1 \\mapsto 1$ and "
     "$1 \\mapsto -1$."),
    ("Fig. 3 / Fig. 4", "Taken from Dupont et al.; the figure numbers differ from the arXiv version of that paper."),
    ("Section 7", "The attention model's code is not public; Table IV's counts leave no room for the $W_q, W_k, W_v$ "
     "projections the text describes (see the attention chapter's audit)."),
]


def textual() -> list[dict]:
    """The textual errata; "what" is Markdown with its formulas as maths (tables.Markdown: not escaped)."""
    return [{"where": where, "what": Markdown(what)} for where, what in TEXTUAL]


def tisode_log_margin() -> list[dict]:
    """Does TisODE's FGSM advantage over the ODENet depend on which logged runs are kept? Per attack: the worst
    TisODE run against the best ODENet run of the authors' log, and the log's means against Table I's."""
    ref = reference_values()
    rows = []
    for attack, models in ref["authors_mnist_fgsm_runs"].items():
        tis, ode = models["TisODE"], models["ODENet"]
        printed = ref["table_1_robustness"]["MNIST"][attack]
        rows.append({
            "attack": attack.replace("_", "-").upper(), "worst TisODE run": f"{min(tis):.1f}", "best ODENet run": f"{max(ode):.1f}",
            "every TisODE run beats every ODENet run": "yes" if min(tis) > max(ode) else "no",
            "TisODE − ODENet, log means": f"{mean_sd(tis)[0] - mean_sd(ode)[0]:+.1f}",
            "TisODE − ODENet, Table I": f"{printed['TisODE'][0] - printed['ODENet'][0]:+.1f}",
        })
    return rows


def steady_state(store=None) -> list[dict]:
    """Sec. 5.2 says the regulariser is there "to ensure convergence to a stable steady state". Evidence: the
    authors' own checkpoints, TisODE trained with the term and the ODENet without it (the printed protocol, 100
    epochs), measured by their evaluation's sanity stage: mean |f(z(t))| over the attack images at T and 2T; and,
    where their read-out units have run (:mod:`robustode.chapters.robustness.readout`), what the decision does at 2T:
    the clean decisions kept, and Yan et al.'s PGD images crafted at T (largest eps read) judged at T and at 2T.
    ``[]`` when ``store`` (default: the ``full`` profile's) holds no such profiles."""
    from robustode.chapters.robustness import authors, readout
    from robustode.chapters.robustness.findings import AT_REST, settling_ratio
    from robustode.chapters.robustness.tables import field_at
    from robustode.store import Store

    store = store or Store("full")
    read = readout.results(store)
    rows = []
    for label, prof in authors.field_profiles(store).items():
        ratio = settling_ratio(prof)
        row = {"checkpoint": label, "steady-state term": "yes" if label.startswith("TisODE") else "no",
               "mean ∣f∣ at T = 1": f"{field_at(prof, 1.0):.3f}", "at 2T = 2": f"{field_at(prof, 2.0):.3f}",
               "ratio 2T / T": f"{ratio:.2f}", f"at rest (ratio under {AT_REST})": "yes" if ratio < AT_REST else "no"}
        if (m := read.get(label)) is not None:
            eps = max(m["pgd"], key=float)
            at_t, at_2t = readout.index_of(m, 1.0), readout.index_of(m, 2.0)
            row["clean decisions kept at 2T (%)"] = f"{100 * m['clean']['agreement'][at_2t]:.1f}"
            row[f"PGD-{eps} crafted at T: at T → at 2T (%)"] = (f"{100 * m['pgd'][eps]['accuracy'][at_t]:.1f} → "
                                                              f"{100 * m['pgd'][eps]['accuracy'][at_2t]:.1f} "
                                                              f"({readout.change(m, eps).text()})")
        rows.append(row)
    return rows
