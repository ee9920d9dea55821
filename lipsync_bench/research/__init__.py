"""The paper's research code, built on the evaluation core (which never imports it): sync-expert
training, the stability and robustness studies of the sync experts, and the stabilized generator."""
