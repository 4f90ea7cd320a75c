"""Beam options: DirectRunner defaults filled in, caller's arguments passed through unchanged."""

from peterrec.components import beam_options


def test_tests_run_beam_in_memory():
    assert beam_options.in_memory_requested()
    options = beam_options.make_pipeline_options(None).get_all_options()
    assert options["direct_running_mode"] == "in_memory"


def test_default_is_multi_processing_on_every_core(monkeypatch):
    monkeypatch.delenv(beam_options.IN_MEMORY_ENV, raising=False)
    options = beam_options.make_pipeline_options([]).get_all_options()
    assert options["direct_running_mode"] == "multi_processing"
    assert options["direct_num_workers"] == beam_options.available_cpus()
    assert beam_options.describe([]).startswith("DirectRunner (multi_processing")


def test_callers_direct_settings_win(monkeypatch):
    monkeypatch.delenv(beam_options.IN_MEMORY_ENV, raising=False)
    args = ["--direct_running_mode=multi_threading", "--direct_num_workers", "3"]
    assert beam_options.default_direct_args(args) == []
    options = beam_options.make_pipeline_options(args).get_all_options()
    assert (options["direct_running_mode"], options["direct_num_workers"]) == ("multi_threading", 3)


def test_in_memory_asked_for_runs_one_worker(monkeypatch):
    monkeypatch.delenv(beam_options.IN_MEMORY_ENV, raising=False)
    assert beam_options.default_direct_args(["--direct_running_mode", "in_memory"]) == ["--direct_num_workers=1"]
    assert beam_options.describe(["--direct_running_mode=in_memory"]) == "DirectRunner (in_memory, 1 worker)"


def test_other_runners_get_the_arguments_unchanged():
    args = ["--runner=FlinkRunner", "--flink_master=localhost:8081", "--parallelism=4"]
    assert beam_options.default_direct_args(args) == []
    options = beam_options.make_pipeline_options(args).get_all_options(retain_unknown_options=True)
    assert options["runner"] == "FlinkRunner" and options["flink_master"] == "localhost:8081"
    assert options["direct_running_mode"] == "in_memory"  # Beam's own default, untouched
    assert beam_options.describe(["--runner", "DataflowRunner"]) == "DataflowRunner"
    assert not beam_options.is_local_direct(["--runner", "SparkRunner"])
    assert beam_options.is_local_direct(["--runner=DirectRunner"])
