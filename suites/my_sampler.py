"""The example proposal of docs/proposing-a-sampler.md, which suites/proposal.toml runs."""

import math

from scorebench.samplers import Sampler


class HeunSDE(Sampler):
    """Heun's predictor-corrector on the drift of the reverse SDE, one Brownian increment per step
    (Karras et al. 2022's stochastic sampler without churn): two score evaluations per step."""

    noise_per_step = 1  # standard normal d-vectors the step needs

    def step(self, score, process, x, t, t_next, noise):
        h = t - t_next

        def drift(y, s):
            return float(process.f(s)) * y - float(process.g2(s)) * score(y, s)

        kick = math.sqrt(float(process.g2(t)) * h) * noise[:, 0]
        d1 = drift(x, t)
        x_pred = x - h * d1 + kick
        return x - 0.5 * h * (d1 + drift(x_pred, t_next)) + kick
