"""One module per stream stage. An agent never imports another agent, nor the pipeline."""
