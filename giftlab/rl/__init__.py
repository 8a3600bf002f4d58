"""RL after initialisation: rollouts with verifier rewards, GRPO (the objective lives in
giftlab.losses.grpo), evaluation with pass@k."""
