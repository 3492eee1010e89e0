"""The paper's subjective evaluation: blind rating items, the responses file and its report."""
