"""Speed and quality benchmarks (`make bench`); results land in bench/results/."""
