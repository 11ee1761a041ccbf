"""The evaluation report component and its HTML."""
