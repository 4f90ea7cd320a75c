"""The transfer-table benchmark's wiring (benchmarks/transfer_table.py): folds, the tasks a data set
defines, where the output goes, the run plan, the table and the Done-when verdicts. No model is
trained here (the Beam-level fold check is marked slow); the benchmark itself needs real data."""

import importlib.util
import os

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PATH = os.path.join(_ROOT, "benchmarks", "transfer_table.py")
_spec = importlib.util.spec_from_file_location("peterrec_benchmark_transfer_table", _PATH)
transfer_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(transfer_table)


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)
    return str(path)


# ----------------------------------------------------------------------------- folds


@pytest.mark.parametrize("folds", [3, 5, 7])
def test_fold_roles_are_disjoint_cover_every_fold_and_test_each_fold_once(folds):
    names = transfer_table.fold_names(folds)
    tested = []
    for fold in range(folds):
        roles = transfer_table.fold_roles(folds, fold)
        train, evaluation, test = set(roles["train"]), set(roles["eval"]), set(roles["test"])
        assert len(evaluation) == len(test) == 1 and len(train) == folds - 2
        assert not (train & evaluation) and not (train & test) and not (evaluation & test)
        assert train | evaluation | test == set(names)
        assert evaluation == {names[(fold + 1) % folds]}
        tested.extend(test)
    assert sorted(tested) == sorted(names)  # every fold (so every user) is tested exactly once


def test_fold_fractions_put_every_user_in_exactly_one_fold():
    from peterrec.components.splits import assign_split

    fractions = transfer_table.fold_fractions(5)
    assert [name for name, _ in fractions] == transfer_table.fold_names(5)
    users = [f"u{i}" for i in range(5000)]
    assigned = {u: assign_split(u, fractions) for u in users}
    assert set(assigned.values()) == set(transfer_table.fold_names(5))
    sizes = [sum(1 for f in assigned.values() if f == name) for name in transfer_table.fold_names(5)]
    assert sum(sizes) == len(users) and min(sizes) > 900 and max(sizes) < 1100  # equal folds by hash
    assert {u: assign_split(u, fractions) for u in users} == assigned  # the same users every time
    with pytest.raises(ValueError):
        transfer_table.fold_fractions(2)  # no room for a train fold beside the test and eval folds


def test_run_files_take_the_fold_roles(tmp_path):
    for name in transfer_table.fold_names(4):
        os.makedirs(tmp_path / f"Split-{name}")
        _write(tmp_path / f"Split-{name}" / "data_tfrecord-00000-of-00001.gz", "")
    files = transfer_table.run_files(str(tmp_path), 4, 3)
    names = {role: sorted(os.path.basename(os.path.dirname(f)) for f in found) for role, found in files.items()}
    assert names == {"test": ["Split-fold3"], "eval": ["Split-fold0"], "train": ["Split-fold1", "Split-fold2"]}


@pytest.mark.slow
def test_ingested_folds_are_disjoint_and_cover_the_labelled_users(tmp_path):
    """Beam: the attribute task built with fold fractions writes each labelled user to one fold."""
    from peterrec.components.ingest import IngestConfig, run_ingestion
    from peterrec.components.synthetic import SyntheticConfig, generate
    from peterrec.components.task_examples import AttributeTaskConfig, run_attribute_task

    data = generate(str(tmp_path / "data"), SyntheticConfig(users=120, source_items=30, target_items=10,
                                                              min_source_len=5, max_source_len=10))
    run_ingestion(IngestConfig(source_format="csv", source_path=data.interactions), str(tmp_path / "pex"),
                  str(tmp_path / "vocab"), str(tmp_path / "rej"))
    config = AttributeTaskConfig(source_format="csv", source_path=data.interactions, label_format="csv",
                                 label_path=data.attributes["gender"], split_fractions=transfer_table.fold_fractions(3))
    run_attribute_task(config, str(tmp_path / "ex"), str(tmp_path / "labels"), str(tmp_path / "rej2"),
                       str(tmp_path / "vocab"))
    users = {}
    for name in transfer_table.fold_names(3):
        files = transfer_table.split_files_of(str(tmp_path / "ex"), [name])
        users[name] = set(transfer_table.baselines_lib.load_files(files, "classification")["user_ids"])
    assert all(users.values())
    names = list(users)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not users[a] & users[b]
    assert set().union(*users.values()) == {f"u{i:03d}" for i in range(1, 121)}


# ----------------------------------------------------------------------------- tasks the data defines


def test_cold_start_needs_item_metadata(tmp_path):
    with_domain = _write(tmp_path / "with.csv", "user,item,timestamp,domain\nu1,a,1,source\nu1,b,2,target\n")
    without = _write(tmp_path / "without.csv", "user,item,timestamp\nu1,a,1\nu1,b,2\n")
    plain_peterrec = _write(tmp_path / "plain.csv", "0,0,3,4,5\n")
    cold, why = transfer_table.cold_start_source("csv", with_domain)
    assert cold == {"domain_rule": None} and "domain column" in why
    cold, why = transfer_table.cold_start_source("csv", without)
    assert cold is None and "no item metadata" in why
    cold, why = transfer_table.cold_start_source("peterrec-csv", plain_peterrec)
    assert cold is None and "no item metadata" in why
    for fmt in ("movielens-1m", "movielens-100k"):  # an item table with genres and a domain rule
        cold, _ = transfer_table.cold_start_source(fmt, "/nowhere")
        assert cold == {"domain_rule": "movielens-genre"}


def test_attribute_tasks_come_from_the_format_or_label_files():
    assert list(transfer_table.attribute_sources("movielens-1m", {})) == ["gender", "age", "occupation"]
    tasks = transfer_table.attribute_sources("csv", {"gender": "/d/gender.csv"})
    assert tasks == {"gender": {"label_format": "csv", "label_path": "/d/gender.csv", "attribute": "label"}}
    assert transfer_table.attribute_sources("csv", {}) == {}


def test_a_run_without_item_metadata_skips_cold_start_and_says_so(tmp_path, capsys):
    data = _write(tmp_path / "interactions.csv", "user,item,timestamp\nu1,a,1\nu1,b,2\n")
    code = transfer_table.main(["--format", "csv", "--source", data, "--tasks", "cold_start",
                                "--work", str(tmp_path / "work")])
    output = capsys.readouterr()
    assert code == 2  # nothing else was asked for
    assert "cold-start task skipped: no item metadata" in output.out
    assert "no task to run" in output.err
    attributes, cold, _, notes = transfer_table.available_tasks("csv", data, {"gender": "/d/g.csv"})
    assert list(attributes) == ["gender"] and cold is None
    assert any(n.startswith("cold-start task skipped") for n in notes)


# ----------------------------------------------------------------------------- arguments and output


def test_default_output_is_outside_the_repository():
    args = transfer_table.parse_args(["--source", "/data/ml-1m"])
    assert args.format == "movielens-1m" and args.folds == 5 and args.seeds == 1
    assert not transfer_table.inside(args.out, _ROOT) and not transfer_table.inside(args.work, _ROOT)
    assert transfer_table.inside(args.out, args.work)
    assert not transfer_table.inside(args.out, os.path.join(_ROOT, "benchmarks", "results"))
    published = transfer_table.parse_args(["--source", "/d", "--out", "benchmarks/results/transfer_table.md"])
    assert published.out == "benchmarks/results/transfer_table.md"  # publishing is explicit


def test_a_work_dir_inside_the_repository_is_refused(capsys):
    code = transfer_table.main(["--movielens", "/nowhere", "--work", os.path.join(_ROOT, "build", "tt")])
    assert code == 2 and "inside the repository" in capsys.readouterr().err


def test_movielens_is_an_alias_and_quick_uses_three_folds():
    args = transfer_table.parse_args(["--movielens", "/data/ml-1m", "--format", "csv", "--quick"])
    assert (args.format, args.source, args.folds) == ("movielens-1m", "/data/ml-1m", 3)
    with pytest.raises(SystemExit):
        transfer_table.parse_args(["--source", "/d", "--folds", "2"])
    with pytest.raises(SystemExit):
        transfer_table.parse_args([])  # no data


def test_strategies_follow_the_trainer():
    from peterrec.trainer import config

    assert transfer_table.STRATEGIES == tuple(config.STRATEGIES)
    assert transfer_table.parse_args(["--source", "/d"]).strategies == list(config.STRATEGIES)


def test_settings_follow_the_fine_tuning_defaults_and_the_tag_sees_the_folds():
    from peterrec.trainer.finetune import FinetuneConfig

    def settings(*extra):
        return transfer_table.settings_from_args(transfer_table.parse_args(["--source", "/d", *extra]))

    plain = settings()
    defaults = FinetuneConfig(task={"name": "t"})
    assert plain["finetune"]["max_len"] == defaults.max_len and plain["finetune"]["epochs"] == defaults.epochs
    assert plain["finetune"]["learning_rate"] == defaults.learning_rate
    assert plain["ingest_max_len"] is None  # whole histories
    assert transfer_table.tag_of(settings("--folds", "4")) != transfer_table.tag_of(plain)
    config = transfer_table.finetune_config("gender", "fine-all", 2, {"task_vocabulary": "t", "vocabulary": "v"},
                                            plain)
    assert config.seed == 2 and config.monitor == "val_loss" and config.learning_rate == 1e-3
    assert transfer_table.finetune_config("cold_start", "peterrec-serial", 0, {"task_vocabulary": "t",
                                          "vocabulary": "v"}, plain).monitor is None


# ----------------------------------------------------------------------------- plan and table


def test_the_plan_runs_every_fold_and_cold_start_seeds():
    plan = transfer_table.run_plan(3, 2, ["fine-cls", "peterrec-serial"], ["gender", "cold_start"])
    assert len(plan) == len(set(plan)) == 2 * 3 * 2 * 2
    gender = [(f, s) for t, st, f, s in plan if t == "gender" and st == "fine-cls"]
    assert sorted(gender) == [(f, s) for f in range(3) for s in range(2)]
    cold = sorted(s for t, st, f, s in plan if t == "cold_start" and st == "fine-cls")
    assert cold == list(range(6)) and all(f is None for t, _, f, _ in plan if t == "cold_start")
    assert plan[0][1] == "peterrec-serial"  # the compared strategies first


def _row(task, strategy, fold, seed, value, percent=5.0):
    return {"tag": "t", "task": task, "strategy": strategy, "fold": fold, "seed": seed,
            "trainable_params": 10, "fine_all_params": 200, "trainable_percent": percent,
            "metrics": {"accuracy": value, "macro_f1": value / 2, "mrr@5": value}}


def test_the_table_shows_fold_means_with_standard_errors_and_counts_only_the_plan():
    rows = [_row("gender", "fine-all", fold, 0, 0.70 + fold / 100) for fold in range(3)]
    rows.append(_row("gender", "fine-all", 4, 0, 0.10))  # a fold outside a 3-fold plan
    baselines = {"gender": {"folds": {str(f): {"logreg_all": {"accuracy": 0.6, "macro_f1": 0.5, "C": 1.0}}
                                      for f in range(3)}}}
    table = transfer_table.format_table(rows, baselines, {}, None, {}, "t", ["gender"], ["fine-all"], 3, 1, "cmd")
    assert "| fine-all | 0.7100 ± 0.0058 (n=3) |" in table
    assert "| *logistic regression, bag of ALL items* | 0.6000 ± 0.0000 (n=3) |" in table
    assert "gender/logreg_all: 1, 1, 1" in table


def test_paired_differences_use_the_folds_both_have_or_a_constant():
    mean, error, n = transfer_table.paired_difference({0: 0.5, 1: 0.7, 2: 0.6}, {0: 0.4, 1: 0.6, 2: 0.5})
    assert mean == pytest.approx(0.1) and error == pytest.approx(0.0, abs=1e-12) and n == 3  # fold effects cancel
    mean, error, n = transfer_table.paired_difference({0: 0.5, 1: 0.7}, {None: 0.5}, scale=1.1)
    assert mean == pytest.approx(0.6 - 0.55) and n == 2 and error == pytest.approx(0.1)  # stdev(-0.05, 0.15) / sqrt(2)


def _verdicts(values, percents, tasks, strategies):
    lines = transfer_table.criteria_lines(lambda t, n, m: values.get((t, n, m), {}),
                                          lambda t, s: percents.get((t, s)), tasks, strategies)
    return {(line.split(" | ")[0][2:], line.split(" | ")[1]): line.rsplit(" | ", 1)[1][:-2]
            for line in lines if line.startswith("| ") and not line.startswith("| criterion")}


def test_criteria_decide_on_the_folds():
    folds = lambda *v: dict(enumerate(v))  # noqa: E731
    values = {("age", "peterrec-serial", "accuracy"): folds(0.40, 0.42, 0.41),
              ("age", "peterrec-parallel", "accuracy"): folds(0.38, 0.40, 0.39),
              ("age", "iak", "accuracy"): folds(0.45, 0.47, 0.46),  # best, but over the parameter limit
              ("age", "fine-all", "accuracy"): folds(0.405, 0.425, 0.415),
              ("age", "fine-cls", "accuracy"): folds(0.39, 0.41, 0.40),
              ("age", "peter-zero", "accuracy"): folds(0.41, 0.43, 0.42),
              ("age", "logreg_all", "accuracy"): folds(0.395, 0.415, 0.405),
              ("age", "probe", "accuracy"): folds(0.395, 0.41, 0.405),
              ("cold_start", "peterrec-serial", "mrr@5"): {0: 0.030, 1: 0.032},
              ("cold_start", "fine-all", "mrr@5"): {0: 0.030, 1: 0.031},
              ("cold_start", "item_knn", "mrr@5"): {None: 0.030}}
    percents = {("age", "peterrec-serial"): 5.0, ("age", "iak"): 20.0, ("cold_start", "peterrec-serial"): 12.0}
    strategies = ["peterrec-serial", "peterrec-parallel", "iak", "fine-all", "fine-cls", "peter-zero"]
    verdicts = _verdicts(values, percents, ["age", "cold_start"], strategies)
    pe = [k for k in verdicts if k[0].startswith("best parameter-efficient") and k[1] == "age"]
    assert verdicts[pe[0]] == "PASS"  # peterrec-serial 0.41 >= LR 0.405; iak (20 %) is not a candidate
    assert verdicts[("best PeterRec >= linear probe of its frozen backbone + 1 point", "age")] == "FAIL"  # +0.67
    assert verdicts[("best PeterRec within 1 point of fine-all", "age")] == "PASS"  # -0.5 points
    assert verdicts[("best PeterRec above fine-cls", "age")] == "PASS"
    assert verdicts[("best PeterRec above peter-zero", "age")] == "FAIL"
    assert verdicts[("best PeterRec MRR@5 >= 1.1 x item kNN on full histories", "cold_start")] == "FAIL"  # 0.031
    assert verdicts[("best PeterRec within 15 % of fine-all's trainable parameters", "cold_start")] == "PASS"
    values[("cold_start", "item_knn", "mrr@5")] = {None: 0.027}
    verdicts = _verdicts(values, percents, ["cold_start"], strategies)
    # 0.031 - 1.1 x 0.027 = +0.0013, with a seed standard error of 0.001: passes, outside the noise.
    assert verdicts[("best PeterRec MRR@5 >= 1.1 x item kNN on full histories", "cold_start")] == "PASS"


def test_a_verdict_inside_the_noise_says_so_and_missing_runs_give_no_verdict():
    values = {("gender", "peterrec-serial", "accuracy"): {0: 0.70, 1: 0.74},
              ("gender", "fine-all", "accuracy"): {0: 0.72, 1: 0.71}}
    verdicts = _verdicts(values, {}, ["gender"], ["peterrec-serial", "fine-all", "fine-cls"])
    assert verdicts[("best PeterRec within 1 point of fine-all", "gender")] == "PASS (inside one s.e.)"
    assert verdicts[("best PeterRec above fine-cls", "gender")] == "—"
    lines = transfer_table.criteria_lines(lambda *a: {}, lambda *a: None, ["gender"], ["fine-all"])
    assert any("no finished run" in line for line in lines)
    assert not any("PASS" in line or "FAIL" in line for line in lines)
