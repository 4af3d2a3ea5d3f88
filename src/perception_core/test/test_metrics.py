from __future__ import annotations

import json
import os

import numpy as np

from perception_core.atomic import write_json
from perception_core.metrics import Latency, Monitor, Rate, latency_stats, summary_ms


def test_latency_percentiles_and_window():
    latency = Latency(window=100)
    for ms in range(1, 201):
        latency.add(ms / 1e3)
    summary = latency.summary_ms()
    assert summary['count'] == 200
    assert summary['p50_ms'] == np.percentile(np.arange(101, 201), 50)
    assert summary['max_ms'] == 200.0
    assert Latency().summary_ms() == {'count': 0}



def test_one_summary_behind_the_node_files_and_the_benchmarks():
    seconds = [i / 1e3 for i in (5, 1, 3, 2, 4)]
    latency = Latency()
    for value in seconds:
        latency.add(value)
    stats = latency_stats(seconds)
    assert latency.summary_ms() == summary_ms(seconds) == {
        'count': 5, 'mean_ms': stats['mean'], 'p50_ms': stats['p50'], 'p90_ms': stats['p90'],
        'p99_ms': stats['p99'], 'max_ms': stats['max']}
    assert stats['p50'] == 3.0 and stats['min'] == 1.0
    assert summary_ms([]) == {'count': 0}

def test_rate_counts_only_recent_events():
    rate = Rate(window_s=5.0)
    for t in np.arange(0, 10, 0.1):
        rate.tick(float(t))
    assert 9.5 <= rate.hz(10.0) <= 10.5
    assert rate.hz(100.0) == 0.0 and rate.count == 100


def test_monitor_document_and_atomic_write(tmp_path):
    monitor = Monitor(['infer'])
    monitor.received.tick(1.0)
    monitor.drops['rate'] += 2
    monitor.errors['bad_image'] += 1
    monitor.profile.add({'infer': 0.004})
    doc = monitor.document(1.5)
    assert doc['dropped_total'] == 2 and doc['errors'] == {'bad_image': 1}
    assert doc['process']['rss_bytes'] > 10**6
    path = write_json(tmp_path / 'deep' / 'm.json', doc)
    assert json.loads(path.read_text())['frames_received'] == 1
    assert os.listdir(path.parent) == ['m.json'], 'no temporary file may be left behind'
    assert monitor.profile.document()['infer']['p50_ms'] == 4.0


def test_the_monitoring_document_counts_batches_by_size_only_where_there_were_any() -> None:
    from perception_core.metrics import Monitor
    monitor = Monitor(['infer'])
    assert 'batches' not in monitor.document(0.0)
    monitor.batches[2] += 3
    monitor.batches[1] += 1
    assert monitor.document(0.0)['batches'] == {'1': 1, '2': 3}
