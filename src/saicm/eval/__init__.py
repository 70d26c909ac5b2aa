"""Evaluation: codecs x recognition tasks -> rate-accuracy curves, BD-rate, report."""

#: Least share of the accuracy range two curves span together on which both are defined, for a
#: BD-rate. BD-rate averages the log-rate gap over the accuracies both curves reach; on a sliver
#: of that range the average rests on one corner of each curve and swings with a single point
#: (two curves meeting on 0.2% of it gave a confident -62.2%). ``bjontegaard`` warns below 75%;
#: saicm refuses below 50% and says so in the table.
MIN_OVERLAP = 0.5
