"""Training targets: edge masks (SAM, HED, classical) and object masks for region learning."""
