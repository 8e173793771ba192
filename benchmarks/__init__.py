"""Speed and memory benchmarks; each module is runnable as ``python -m benchmarks.<name>`` (see BENCHMARKS.md)."""
