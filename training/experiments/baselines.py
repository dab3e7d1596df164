"""Baseline rankers trained on the same split, sessions and features as the MMoE.

Every baseline gets the tabular features (3 categorical, 21 continuous) plus the cosine of the
frozen encoder's query and title embeddings. The 768 element-wise interaction columns of the
full MMoE are left out for them: tree ensembles and attention over feature tokens become too
slow on a 2-core CPU with that many columns. The MMoE without interactions (text block
"cosine") is the like-for-like comparison.

Neural baselines (TabNet, FT-Transformer, DCN-V2) are wrapped in `TabularRanker`, which adds
the same input standardization, per-position logit bias and four task outputs as the MMoE, and
train with the same loss and early stopping (`training.trainer.fit`). Gradient-boosted trees
learn one ranking of the outcome level (0 none, 1 click, 2 add-to-cart, 3 purchase) or one
binary model per task.
"""

import logging

import numpy as np
import pandas as pd
import torch
from torch import nn

from service.features.builder import CATEGORICAL_FEATURES, CONTINUOUS_FEATURES
from training.dataset import RankingSet
from training.evaluation import list_boundaries
from training.model.mmoe import MAX_POSITION, TASKS

logger = logging.getLogger(__name__)
BOOSTING_ROUNDS = 300
EARLY_STOPPING_ROUNDS = 30


def outcome_level(data: RankingSet) -> np.ndarray:
    """Return int [n]: 0 none, 1 click, 2 add-to-cart, 3 purchase (the deepest outcome)."""
    return np.nan_to_num(data.targets[:, :3]).sum(axis=1).astype(np.int64)


def tabular_frame(data: RankingSet, tables) -> pd.DataFrame:
    """Return the baselines' features: categorical columns as pandas categories, then numbers."""
    frame = pd.DataFrame(data.continuous, columns=list(CONTINUOUS_FEATURES))
    queries, products = tables.lookup(torch.from_numpy(data.query_rows), torch.from_numpy(data.product_rows))
    frame["encoder_cosine"] = (queries * products).sum(dim=1).numpy()
    for i, name in enumerate(CATEGORICAL_FEATURES):
        frame[name] = pd.Categorical(data.categorical[:, i])
    return frame


def _group_sizes(list_ids: np.ndarray) -> list[int]:
    return [rows.stop - rows.start for rows in list_boundaries(list_ids)]


def _align_categories(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Give every frame's categorical columns the union of categories, as XGBoost requires."""
    for name in CATEGORICAL_FEATURES:
        union = sorted(set().union(*(set(f[name].cat.categories) for f in frames)))
        for f in frames:
            f[name] = f[name].cat.set_categories(union)
    return frames


def fit_xgboost_ranker(train: RankingSet, validation: RankingSet, tables, threads: int, seed: int):
    """LambdaMART (rank:ndcg) on outcome levels, with XGBoost's position debiasing.

    `lambdarank_unbiased` estimates the position bias from the order of rows in each list, which
    is the logged order in the training sets.
    """
    import xgboost as xgb

    x_train, x_valid = _align_categories([tabular_frame(train, tables), tabular_frame(validation, tables)])
    model = xgb.XGBRanker(
        objective="rank:ndcg",
        n_estimators=BOOSTING_ROUNDS,
        learning_rate=0.1,
        max_depth=6,
        tree_method="hist",
        enable_categorical=True,
        lambdarank_unbiased=True,
        eval_metric="ndcg@10",
        early_stopping_rounds=EARLY_STOPPING_ROUNDS,
        n_jobs=threads,
        random_state=seed,
    )
    model.fit(
        x_train,
        outcome_level(train),
        qid=train.list_ids,
        eval_set=[(x_valid, outcome_level(validation))],
        eval_qid=[validation.list_ids],
        verbose=False,
    )
    return lambda data: model.predict(_align_like(tabular_frame(data, tables), x_train))


def fit_xgboost_per_task(train: RankingSet, validation: RankingSet, tables, threads: int, seed: int):
    """Train one binary XGBoost model per behavioural task and a logistic one for relevance.

    Returns a function giving probabilities [n, len(TASKS)], fused like the MMoE's heads.
    """
    import xgboost as xgb

    x_train, x_valid = _align_categories([tabular_frame(train, tables), tabular_frame(validation, tables)])
    models = []
    for t, task in enumerate(TASKS):
        target = train.targets[:, t]
        present = ~np.isnan(target)
        settings = dict(
            n_estimators=BOOSTING_ROUNDS,
            learning_rate=0.1,
            max_depth=6,
            tree_method="hist",
            enable_categorical=True,
            n_jobs=threads,
            random_state=seed,
        )
        if task == "relevance":
            # Validation lists carry no generated labels, so this model runs all its rounds.
            model = xgb.XGBRegressor(objective="reg:logistic", **settings)
            model.fit(x_train[present], target[present], verbose=False)
        else:
            model = xgb.XGBClassifier(
                objective="binary:logistic", early_stopping_rounds=EARLY_STOPPING_ROUNDS, **settings
            )
            model.fit(
                x_train,
                target.astype(int),
                eval_set=[(x_valid, validation.targets[:, t].astype(int))],
                verbose=False,
            )
        models.append((task, model))

    def probabilities(data: RankingSet) -> np.ndarray:
        frame = _align_like(tabular_frame(data, tables), x_train)
        columns = [
            m.predict(frame) if task == "relevance" else m.predict_proba(frame)[:, 1] for task, m in models
        ]
        return np.clip(np.column_stack(columns), 0.0, 1.0).astype(np.float32)

    return probabilities


def fit_lightgbm_ranker(train: RankingSet, validation: RankingSet, tables, threads: int, seed: int):
    """LightGBM LambdaMART on outcome levels, early stopping on validation NDCG@10."""
    import lightgbm as lgb

    x_train, x_valid = tabular_frame(train, tables), tabular_frame(validation, tables)
    model = lgb.LGBMRanker(
        objective="lambdarank",
        n_estimators=BOOSTING_ROUNDS,
        learning_rate=0.1,
        num_leaves=31,
        min_child_samples=20,
        n_jobs=threads,
        random_state=seed,
        verbose=-1,
    )
    model.fit(
        x_train,
        outcome_level(train),
        group=_group_sizes(train.list_ids),
        eval_set=[(x_valid, outcome_level(validation))],
        eval_group=[_group_sizes(validation.list_ids)],
        eval_at=[10],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    return lambda data: model.predict(tabular_frame(data, tables))


def _align_like(frame: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Give `frame` the categories of `reference`; an unseen category becomes missing."""
    for name in CATEGORICAL_FEATURES:
        frame[name] = frame[name].cat.set_categories(reference[name].cat.categories)
    return frame


class TabularRanker(nn.Module):
    """A tabular network with the MMoE's inputs, outputs and position bias, for `trainer.fit`.

    The network gets standardized continuous features plus the encoder cosine. The embedding
    inputs serve only to compute that cosine.
    """

    def __init__(self, network: nn.Module, kind: str, continuous_mean, continuous_std) -> None:
        super().__init__()
        self.network = network
        self.kind = kind
        self.register_buffer("continuous_mean", torch.as_tensor(continuous_mean, dtype=torch.float32))
        self.register_buffer("continuous_std", torch.as_tensor(continuous_std, dtype=torch.float32))
        self.position_bias = nn.Embedding(MAX_POSITION + 1, len(TASKS))
        nn.init.zeros_(self.position_bias.weight)
        self.register_buffer(
            "behavioural_mask", torch.tensor([task != "relevance" for task in TASKS], dtype=torch.float32)
        )

    def forward(self, categorical, continuous, query_embedding, product_embedding) -> torch.Tensor:
        return torch.sigmoid(self.logits(categorical, continuous, query_embedding, product_embedding))

    def logits(self, categorical, continuous, query_embedding, product_embedding, positions=None):
        standardized = (continuous - self.continuous_mean) / self.continuous_std
        cosine = (query_embedding * product_embedding).sum(dim=1, keepdim=True)
        numbers = torch.cat([standardized, cosine], dim=1)  # [n, 22]
        if self.kind == "tabnet":
            logits, _sparsity_loss = self.network(torch.cat([categorical.float(), numbers], dim=1))
        elif self.kind == "ft_transformer":
            logits = self.network(numbers, categorical)
        else:
            logits = self.network(categorical, numbers)
        if positions is not None:
            logits = logits + self.position_bias(positions.clamp(1, MAX_POSITION)) * self.behavioural_mask
        return logits


class DCNv2(nn.Module):
    """Deep & Cross Network V2 (Wang et al., WWW 2021), stacked: full-rank cross layers, then an MLP.

    Cross layer l: x_{l+1} = x_0 * (W_l x_l + b_l) + x_l, element-wise product, W_l [D, D].
    """

    def __init__(self, cardinalities, embedding_dims, n_numbers: int, n_outputs: int, cross_layers: int = 3):
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(size, dim) for size, dim in zip(cardinalities, embedding_dims, strict=True)
        )
        width = sum(embedding_dims) + n_numbers
        self.cross = nn.ModuleList(nn.Linear(width, width) for _ in range(cross_layers))
        self.deep = nn.Sequential(
            nn.Linear(width, 256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, 128), nn.ReLU(), nn.Dropout(0.1)
        )
        self.output = nn.Linear(128, n_outputs)

    def forward(self, categorical: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        x0 = torch.cat(
            [*(table(categorical[:, i]) for i, table in enumerate(self.embeddings)), numbers], dim=1
        )
        x = x0
        for layer in self.cross:
            x = x0 * layer(x) + x
        return self.output(self.deep(x))


def tabular_network(kind: str, cardinalities: tuple[int, ...], n_numbers: int) -> nn.Module:
    """Build the network of a neural baseline: "tabnet", "ft_transformer" or "dcn_v2"."""
    if kind == "tabnet":
        from pytorch_tabnet.tab_network import TabNet

        input_dim = len(cardinalities) + n_numbers
        return TabNet(
            input_dim=input_dim,
            output_dim=len(TASKS),
            n_d=16,
            n_a=16,
            n_steps=3,
            cat_idxs=list(range(len(cardinalities))),
            cat_dims=list(cardinalities),
            cat_emb_dim=[8, 4, 2],
            virtual_batch_size=256,
            # One group per feature: TabNet's attention then selects single features.
            group_attention_matrix=torch.eye(input_dim),
        )
    if kind == "ft_transformer":
        from rtdl_revisiting_models import FTTransformer

        # One block of width 64 (the package's smallest default is one block of 96): each of the
        # 26 feature tokens attends to all others, which dominates the cost on a CPU.
        settings = {**FTTransformer.get_default_kwargs(n_blocks=1), "d_block": 64}
        return FTTransformer(
            n_cont_features=n_numbers, cat_cardinalities=list(cardinalities), d_out=len(TASKS), **settings
        )
    if kind == "dcn_v2":
        return DCNv2(cardinalities, (16, 8, 4), n_numbers, len(TASKS))
    raise ValueError(f"unknown tabular network {kind!r}; expected tabnet, ft_transformer or dcn_v2")
