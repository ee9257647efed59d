"""Backend-neutral closed forms and shared types (numpy + array API; no numba, no torch imports).

Importing this package never pulls in Numba, torch or gymnasium, so the deep (torch) code can share
every formula written here. Iterative, loop-heavy algorithms live one level up in
``fixpoint_rl.tabular`` (Numba kernels in ``fixpoint_rl.tabular._kernels``).

Notation used across the code base
----------------------------------
=========================  ====================  ==============================================
code                       paper symbol          meaning
=========================  ====================  ==============================================
``pref[i, j]``             P(y_i ≻ y_j)          preference matrix, pref + prefᵀ = 1
``ref``                    μ                     reference (SFT) policy
``pi``                     π                     policy
``tau``                    τ (NLHF)              KL-regularisation strength, preference games
``alpha``                  α (MTPO)              KL-regularisation strength, multi-turn games
``beta``                   β (GPO/DPO/AGRO)      KL coefficient of offline losses (TRL ``beta``)
``mixture``                β = ητ (Nash-MD)      geometric-mixture weight (TRL ``mixture_coef``)
``eta``                    η                     mirror-descent step size
``gamma``                  γ                     discount
``lambda_``                λ                     trace parameter of Q(λ) / Retrace
``atoms``                  z_1 < … < z_M         categorical support
``mass``                   signed weights        may be negative (signed measures)
``probs``                  probabilities         guaranteed non-negative
=========================  ====================  ==============================================

Shape letters in docstrings: S states, A actions, K responses, M atoms, H horizon, T iterations,
B batch, X contexts, C checkpoints.
"""
