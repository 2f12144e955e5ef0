"""Statistics: stat() counters, rate() windows, RRD graphs and the 1-second sampler."""
