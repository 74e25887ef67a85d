"""The report of a scenario run is written whole or not at all: a kill mid-write leaves no truncated file."""

import itertools
import json
import warnings

from testnet import report
from testnet.measure import measure
from testnet.verdict import judge

from ..node.kill_points import killed_at
from .test_measure import praised

RESULTS = {"scenario": {"name": "short"}, "timeline": [{"t": i} for i in range(2000)], "measurements": {}}
PLOTS = {"_plot_scores": b"\x89PNG scores" * 500, "_plot_latency": b"\x89PNG latency" * 500,
         "_plot_confusion": b"\x89PNG confusion" * 500}


def test_a_report_killed_at_any_point_of_its_writes_leaves_each_file_whole_or_absent(tmp_path, monkeypatch):
    """Before: each file was written in place, so a kill after its open left it empty or cut short."""
    for name, png in PLOTS.items():
        monkeypatch.setattr(report, name, lambda *args, png=png: png)
    monkeypatch.setattr(report, "_html", lambda results, plots: "<html>" + "x" * 10_000 + "</html>")
    whole = {"results.json": (json.dumps(RESULTS, indent=1) + "\n").encode(), "scores.png": PLOTS["_plot_scores"],
             "latency.png": PLOTS["_plot_latency"], "confusion.png": PLOTS["_plot_confusion"],
             "report.html": ("<html>" + "x" * 10_000 + "</html>").encode()}
    for point in itertools.count(1):
        out = tmp_path / f"killed-at-{point}"
        if not killed_at(point, lambda: report.write_report(None, RESULTS, out)):
            break
        for path in out.iterdir() if out.exists() else ():
            assert path.name.startswith(".") or path.read_bytes() == whole[path.name], (point, path.name)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == whole


def test_the_page_opens_with_the_verdict_on_each_attack_its_figures_and_its_rule():
    ran = praised([("n00", 40, "untrusted"), ("n01", 612, "trusted"), ("n02", 950, "verified")])
    results = report.results_json(ran, measure(ran), {})
    results["verdicts"] = [v.as_json() for v in judge(results)]
    page = report._html(results, {})
    assert page.index("<h2>Verdicts</h2>") < page.index("<h2>Summary</h2>")
    assert ("<tr><td>praise of bad by quiet</td><td>succeeded</td><td>its 1 target&#x27;s highest final score at the "
            "2 honest nodes was trusted (612), trusted or better in 1 of 2 views</td>") in page  # (n02 praised it)
    assert "<td>the attack succeeds if any target ends trusted or better at an honest node</td></tr>" in page
    results["verdicts"] = []
    assert "<h2>Verdicts</h2><p>No attack ran in this scenario.</p>" in report._html(results, {})


def test_the_summary_says_how_long_traffic_that_ran_past_its_end_ran():
    """A rotation due near the end of the traffic takes seconds (18 here), and the traffic stops once it is done.
    Before: the summary gave the file's seconds alone."""
    ran = praised([("n00", 40, "untrusted")])
    results = report.results_json(ran, measure(ran), {})
    results["verdicts"] = []
    duration = results["scenario"]["duration"]
    results["timeline"].append({"kind": "traffic stopped", "t": duration + 0.4})
    assert f"<tr><td>duration</td><td>{duration:g} s</td></tr>" in report._html(results, {})
    results["timeline"][-1]["t"] = duration + 7.1
    assert (f"<tr><td>duration</td><td>{duration:g} s, run for {duration + 7.1:g} s: a step ran past its end</td></tr>"
            in report._html(results, {}))


def test_the_scores_plot_tells_its_events_from_the_attackers_views_and_names_these_only_where_there_are_some(
        monkeypatch):
    """Before: the events' vertical lines were dashed, as the attacking orgs' views are, under a key saying "dashed
    lines: attackers' views", which a run without attacks had too; and "seconds into the run" counted from the
    traffic's start."""
    figures = []
    monkeypatch.setattr(report, "_png", figures.append)
    ran = praised([("n00", 40, "untrusted"), ("n02", 950, "verified")])
    results = report.results_json(ran, measure(ran), {})
    results["timeline"].append({"kind": "kill", "t": 3.0})
    report._plot_scores(ran, results)
    report._pyplot().close(figures[-1])
    [axes, *_] = figures[-1].axes[::-1]
    assert axes.get_xlabel() == ("seconds into the traffic (dotted: tier bounds 200, 500, 800; grey: events; dashed: "
                                 "the attacking orgs' views)")
    [event] = [line for line in axes.get_lines() if list(line.get_xdata()) == [3.0, 3.0]]
    assert event.get_linestyle() == "-"
    assert "dashed" not in report._scores_key(attacked=False)


def test_the_scores_plot_says_no_node_scored_an_agent_group_it_has_no_line_for(monkeypatch):
    """Before: its panel was left empty, unexplained, and matplotlib warned on stderr that it found no line to list
    in the legend ("No artists with labels found to put in legend")."""
    figures = []
    monkeypatch.setattr(report, "_png", figures.append)
    ran = praised([("n00", 40, "untrusted")])  # (bad-0 scored; good-0 and good-1 never)
    results = report.results_json(ran, measure(ran), {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report._plot_scores(ran, results)
    report._pyplot().close(figures[-1])
    good, bad = figures[-1].axes
    assert [t.get_text() for t in good.texts] == ["no node scored these agents"] and good.get_legend() is None
    assert list(bad.texts) == [] and bad.get_legend() is not None


def test_the_page_s_summary_names_what_the_run_asked_of_the_nodes_and_did_not_get():
    """As `run`'s summary does. Before: the page said nothing of batches unanswered, of a node that gave no view at
    the end, or of the watchers' failed asks, so a page of a run a stopped node marred read as a clean run's."""
    ran = praised([("n00", 40, "untrusted"), ("n01", 612, "trusted"), ("n02", 950, "verified")])
    results = report.results_json(ran, measure(ran), {})
    results["verdicts"] = []
    assert "unanswered" not in report._html(results, {})  # nothing missing: no such rows
    results["traffic"].update(failed_at={"n02": 1}, skipped_at={"n02": 9})
    results.update(unanswered={"n02": "the node at http://127.0.0.1:4 did not answer within 10.0 s"}, watch_errors=2,
                   last_watch_error="n02: the node at http://127.0.0.1:4 did not answer within 5.0 s")
    page = report._html(results, {})
    for row in ("<tr><td>event batches unanswered</td><td>n02 1</td></tr>",
                "<tr><td>event batches not sent, their node still answering the one before</td>"
                "<td>n02 9</td></tr>",
                "<tr><td>gave no view of the orgs at the end</td><td>n02: the node at http://127.0.0.1:4 did not "
                "answer within 10.0 s</td></tr>",
                "<tr><td>asks for records and scores that failed</td><td>2 (the latest, n02: the node at "
                "http://127.0.0.1:4 did not answer within 5.0 s)</td></tr>"):
        assert row in page


def test_the_page_s_summary_has_a_row_for_each_revocation_and_vouch_change():
    ran = praised([("n00", 40, "untrusted"), ("n01", 612, "trusted"), ("n02", 950, "verified")])
    results = report.results_json(ran, measure(ran), {})
    results["verdicts"] = []
    results["measurements"]["trust_changes"] = [{"kind": "revocation", "index": 0, "t": 6.0, "agents": "bad",
                                                 "revoked": ["bad-0"], "operators": ["n00"]}]
    assert ("<tr><td>revocations[0] at 6 s</td><td>the operator vouches of agents bad revoked: bad-0 (by n00)</td>"
            "</tr>") in report._html(results, {})


def test_the_page_s_summary_gives_the_machine_s_load_average_where_it_was_read():
    ran = praised([("n00", 40, "untrusted"), ("n01", 612, "trusted"), ("n02", 950, "verified")])
    results = report.results_json(ran, measure(ran), {})
    results["verdicts"] = []
    assert "load average" not in report._html(results, {})  # (the fake run read none)
    results["load_average"] = {"traffic_start": 0.3, "traffic_end": 12.0, "cores": 2}
    assert ("<tr><td>the machine&#x27;s load average</td><td>0.3 as traffic started, 12 as it stopped, on 2 "
            "cores</td></tr>") in report._html(results, {})
