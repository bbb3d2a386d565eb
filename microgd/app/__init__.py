"""The application shell on top of the library: model files, the CSV train/predict pipeline, the formula
parser, the ``microgd`` command and tutorial 2's demo. The library (``microgd.*``) never imports from here."""
