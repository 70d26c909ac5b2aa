"""Evaluation: codecs x recognition tasks -> rate-accuracy curves, BD-rate, report."""
