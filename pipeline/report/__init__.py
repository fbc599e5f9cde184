"""`gristmill report`: one offline HTML page of where a run's documents went, and of a training run's metrics."""
