"""Segment Anything's automatic mask generator, rebuilt for label maps: batched, on one device.

``SamAutomaticMaskGenerator`` (segment-anything 1.0) decodes every prompt, up-samples all
``3 * points_per_side**2`` mask logits to the image size, encodes each kept mask as an RLE in a
Python loop and decodes it back. SA-ICM only needs the kept masks painted into a label map.
:class:`LabelMapGenerator` runs the same point grid, the same prompt-encoder and mask-decoder
calls (``points_per_batch`` prompts at a time) and the same filters in the same order
(predicted IoU, stability score, crop-edge boxes, box NMS within a crop, NMS between crops,
small-region removal), but

- projects the image embedding for the first transformer block once per batch, not once per
  prompt (it is the same for every prompt until that block's image-to-token attention);
- filters by predicted IoU *before* up-sampling, and runs the decoder's output up-scaling
  (two transposed convolutions per prompt) only for prompts with a mask that passes it: both
  act on each prompt alone, so the kept masks are bit for bit the same;
- keeps masks as boolean tensors on the model's device (no RLE, no per-mask Python loop except
  for the optional small-region removal, which is OpenCV's, as in segment-anything);
- encodes several images (or crops) per encoder call (``images_per_batch``; ``saicm masks
  --image-batch``) and paints the label map on the device.

Its masks, scores, boxes and order equal the stock generator's, bit for bit on the CPU with
``images_per_batch=1`` (``tests/masks/test_amg.py``); the label map is
:func:`saicm.masks.edges.paint_segments` of those masks. Several images per encoder call round
the embeddings differently (about 1e-6): the same masks unless a score is that close to its
threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["LabelMapGenerator", "PreparedImage", "Segments", "paint_label_map"]


@dataclass
class PreparedImage:
    """An image resized for the encoder, per crop: what a CPU loader worker makes.

    Arguments:
        size: ``(H, W)`` of the original image, pixels.
        crop_boxes: ``[x0, y0, x1, y1]`` of each crop in the original image (the first is the
            whole image), as segment-anything's ``generate_crop_boxes`` gives them.
        layers: crop layer of each crop (0 = the whole image).
        inputs: per crop, uint8 ``(3, h, w)`` resized so that the long side is the encoder's
            ``img_size`` (segment-anything's ``ResizeLongestSide.apply_image``, PIL bilinear).
    """

    size: tuple[int, int]
    crop_boxes: list[list[int]]
    layers: list[int]
    inputs: list[torch.Tensor]


@dataclass
class Segments:
    """The masks the generator keeps, in segment-anything's output order.

    Arguments:
        masks: bool ``(N, H, W)`` on the model's device.
        iou_preds: float32 ``(N,)``, the model's predicted IoU.
        stability_scores: float32 ``(N,)``.
        boxes: ``(N, 4)`` XYXY pixel boxes in the image.
        points: float64 ``(N, 2)`` XY prompt of each mask, pixels.
        crop_boxes: ``(N, 4)`` XYXY crop each mask came from.
    """

    masks: torch.Tensor
    iou_preds: torch.Tensor
    stability_scores: torch.Tensor
    boxes: torch.Tensor
    points: torch.Tensor
    crop_boxes: torch.Tensor

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def select(self, keep: torch.Tensor) -> Segments:
        """The segments at indices (or where the boolean) ``keep``, in that order."""
        return Segments(*(getattr(self, k)[keep.to(getattr(self, k).device)] for k in _FIELDS))

    def label_map(self) -> torch.Tensor:
        """int32 ``(H, W)`` label map (0 = none), painted as :func:`paint_label_map`."""
        return paint_label_map(self.masks)


_FIELDS = ("masks", "iou_preds", "stability_scores", "boxes", "points", "crop_boxes")


def paint_label_map(masks: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """Paint boolean masks into an int32 label map on their device, largest first.

    The same map as :func:`saicm.masks.edges.paint_segments`: masks are ranked by area
    (descending, ties in input order) and mask of rank ``r`` gets label ``r + 1``; a pixel
    takes the label of the last painted mask that covers it.

    Arguments:
        masks: bool ``(N, H, W)``.
        chunk: masks reduced at once (memory: ``chunk * H * W`` int32).

    Returns:
        int32 ``(H, W)``, 0 where no mask covers a pixel.
    """
    n, h, w = masks.shape
    labels = torch.zeros((h, w), dtype=torch.int32, device=masks.device)
    if n == 0:
        return labels
    areas = masks.flatten(1).sum(1)
    order = torch.sort(-areas, stable=True).indices
    for start in range(0, n, chunk):
        idx = order[start : start + chunk]
        ranks = torch.arange(start + 1, start + 1 + len(idx), device=masks.device)
        top = (masks[idx].to(torch.int32) * ranks.to(torch.int32)[:, None, None]).amax(0)
        labels = torch.where(top > 0, top, labels)
    return labels


class LabelMapGenerator:
    """segment-anything's automatic mask generator, same settings and same masks, batched.

    Arguments:
        model: a ``segment_anything`` ``Sam`` (or MobileSAM / LiteMedSAM built as one: an
            ``image_encoder`` with ``img_size``, ``prompt_encoder``, ``mask_decoder``,
            ``preprocess``, ``mask_threshold``), in eval mode, on its device.
        points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh,
        stability_score_offset, box_nms_thresh, crop_n_layers, crop_nms_thresh,
        crop_overlap_ratio, crop_n_points_downscale_factor, min_mask_region_area: as
            ``SamAutomaticMaskGenerator`` (same defaults).
        images_per_batch: images (crops) per image-encoder call.
        upsample_batch: mask logits up-sampled to the image size at once (memory:
            ``upsample_batch * img_size**2`` floats).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        min_mask_region_area: int = 0,
        images_per_batch: int = 1,
        upsample_batch: int = 64,
    ) -> None:
        from segment_anything.utils.amg import build_all_layer_point_grids
        from segment_anything.utils.transforms import ResizeLongestSide

        self.model = model
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.images_per_batch = max(1, images_per_batch)
        self.upsample_batch = max(1, upsample_batch)
        self.point_grids = build_all_layer_point_grids(
            points_per_side, crop_n_layers, crop_n_points_downscale_factor
        )
        self.transform = ResizeLongestSide(model.image_encoder.img_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- CPU side: what a loader worker does -------------------------------------------------
    def prepare(self, image: np.ndarray) -> PreparedImage:
        """Cut the crops of ``image`` (uint8 ``(H, W, 3)`` RGB) and resize each for the encoder.

        CPU only, so it can run in a loader worker while the model works on other images.
        """
        from segment_anything.utils.amg import generate_crop_boxes

        if self.model.image_format != "RGB":
            image = image[..., ::-1]
        size = (int(image.shape[0]), int(image.shape[1]))
        boxes, layers = generate_crop_boxes(size, self.crop_n_layers, self.crop_overlap_ratio)
        inputs = []
        for x0, y0, x1, y1 in boxes:
            resized = self.transform.apply_image(np.ascontiguousarray(image[y0:y1, x0:x1, :]))
            inputs.append(torch.as_tensor(resized).permute(2, 0, 1).contiguous())
        return PreparedImage(size, boxes, layers, inputs)

    # --- device side ---------------------------------------------------------------------------
    @torch.inference_mode()
    def embed(
        self, inputs: Sequence[torch.Tensor], images_per_batch: int | None = None
    ) -> Iterator[torch.Tensor]:
        """Image embeddings ``(1, C, h, w)`` of uint8 ``(3, h, w)`` inputs, in order.

        Arguments:
            inputs: uint8 ``(3, h, w)`` encoder inputs (:attr:`PreparedImage.inputs`).
            images_per_batch: inputs per encoder call (default: the generator's).
        """
        model = self.model
        per = max(1, images_per_batch or self.images_per_batch)
        for start in range(0, len(inputs), per):
            batch = [model.preprocess(x.to(self.device)[None]) for x in inputs[start : start + per]]
            features = model.image_encoder(torch.cat(batch))
            yield from features.split(1)

    @torch.inference_mode()
    def generate(
        self,
        images: Sequence[np.ndarray | PreparedImage],
        images_per_batch: int | None = None,
    ) -> list[Segments]:
        """The kept masks of each image.

        Arguments:
            images: uint8 ``(H, W, 3)`` RGB images, or already :meth:`prepare`-d.
            images_per_batch: encoder inputs (images, or crops of them) per encoder call
                (default: the generator's ``images_per_batch``).
        """
        prepared = [p if isinstance(p, PreparedImage) else self.prepare(p) for p in images]
        flat = [x for p in prepared for x in p.inputs]
        features = self.embed(flat, images_per_batch)
        out = []
        for p in prepared:
            crops = [
                self._process_crop(next(features), p, box, layer, x.shape[-2:])
                for box, layer, x in zip(p.crop_boxes, p.layers, p.inputs, strict=True)
            ]
            out.append(self._merge(crops, p.size))
        return out

    def label_maps(self, images: Sequence[np.ndarray | PreparedImage]) -> list[torch.Tensor]:
        """int32 ``(H, W)`` label map of each image (see :func:`paint_label_map`)."""
        return [s.label_map() for s in self.generate(images)]

    def _decode(
        self, features: torch.Tensor, points: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mask decoder on one batch of single-point prompts, multimask output, but with
        the output up-scaling only for prompts that have a mask above ``pred_iou_thresh``.

        Returns:
            low-res logits ``(K, 256, 256)`` of the masks that pass the IoU filter, their
            predicted IoU ``(K,)``, and their flat index ``prompt * 3 + mask`` in the batch.
        """
        model = self.model
        md = model.mask_decoder
        labels = torch.ones(points.shape[0], dtype=torch.int, device=points.device)
        sparse, dense = model.prompt_encoder(
            points=(points[:, None, :], labels[:, None]), boxes=None, masks=None
        )
        # MaskDecoder.predict_masks, step by step (segment-anything 1.0)
        output_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse), dim=1)
        b = tokens.shape[0]
        _, c, h, w = features.shape
        hs, src = _two_way_transformer(
            md.transformer, features + dense[:1], model.prompt_encoder.get_dense_pe(), tokens
        )
        iou_pred = md.iou_prediction_head(hs[:, 0, :])[:, 1:]  # multimask: masks 1..3
        keep = iou_pred.flatten() > self.pred_iou_thresh
        if self.pred_iou_thresh <= 0.0:
            keep = torch.ones_like(keep)
        alive = keep.view(b, -1).any(1)
        index = torch.arange(b * 3, device=keep.device)[keep]
        if not bool(alive.any()):
            return src.new_zeros((0, 4 * h, 4 * w)), iou_pred.flatten()[keep], index
        mask_tokens_out = hs[:, 1 : (1 + md.num_mask_tokens), :]
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(md.output_hypernetworks_mlps)],
            dim=1,
        )
        # only the prompts with a surviving mask: the same strides as the stock call
        n = int(alive.sum())
        src = src[alive].transpose(1, 2).view(n, c, h, w)
        upscaled = md.output_upscaling(src)
        _, c2, h2, w2 = upscaled.shape
        masks = (hyper_in[alive] @ upscaled.view(n, c2, h2 * w2)).view(n, -1, h2, w2)[:, 1:]
        masks = masks.flatten(0, 1)[keep.view(b, -1)[alive].flatten()]
        return masks, iou_pred.flatten()[keep], index

    def _process_crop(
        self,
        features: torch.Tensor,
        prepared: PreparedImage,
        crop_box: list[int],
        layer: int,
        input_size: Sequence[int],
    ) -> Segments:
        from segment_anything.utils.amg import (
            batch_iterator,
            batched_mask_to_box,
            calculate_stability_score,
            is_box_near_crop_edge,
            uncrop_boxes_xyxy,
            uncrop_points,
        )
        from torchvision.ops.boxes import batched_nms

        model = self.model
        x0, y0, x1, y1 = crop_box
        crop_size = (y1 - y0, x1 - x0)
        orig_h, orig_w = prepared.size
        input_size = tuple(int(v) for v in input_size)
        grid = self.point_grids[layer] * np.array(crop_size)[None, ::-1]
        kept: list[Segments] = []
        for (points,) in batch_iterator(self.points_per_batch, grid):
            coords = torch.as_tensor(
                self.transform.apply_coords(points, crop_size), device=self.device
            )
            low_res, iou, index = self._decode(features, coords)
            pts = torch.as_tensor(points)[index.cpu() // 3]
            for s in range(0, len(low_res), self.upsample_batch):
                part = slice(s, s + self.upsample_batch)
                logits = model.postprocess_masks(low_res[part][:, None], input_size, crop_size)[
                    :, 0
                ]
                stability = calculate_stability_score(
                    logits, model.mask_threshold, self.stability_score_offset
                )
                ok = (
                    stability >= self.stability_score_thresh
                    if self.stability_score_thresh > 0.0
                    else torch.ones_like(stability, dtype=torch.bool)
                )
                masks = logits[ok] > model.mask_threshold
                boxes = batched_mask_to_box(masks)
                inside = ~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
                kept.append(
                    Segments(
                        masks[inside],
                        iou[part][ok][inside],
                        stability[ok][inside],
                        boxes[inside],
                        pts[part][ok.cpu()][inside.cpu()],
                        torch.empty((int(inside.sum()), 4), dtype=torch.int64),
                    )
                )
        seg = _cat(kept, crop_size, self.device)
        keep = batched_nms(
            seg.boxes.float(),
            seg.iou_preds,
            torch.zeros(len(seg.boxes)),
            iou_threshold=self.box_nms_thresh,
        )
        seg = seg.select(keep)
        seg.boxes = uncrop_boxes_xyxy(seg.boxes, crop_box)
        seg.points = uncrop_points(seg.points, crop_box)
        seg.crop_boxes = torch.tensor([crop_box for _ in range(len(seg))])
        if crop_box != [0, 0, orig_w, orig_h]:
            from segment_anything.utils.amg import uncrop_masks

            seg.masks = uncrop_masks(seg.masks, crop_box, orig_h, orig_w)
        return seg

    def _merge(self, crops: list[Segments], size: tuple[int, int]) -> Segments:
        from torchvision.ops.boxes import batched_nms, box_area

        seg = _cat(crops, size, self.device)
        if len(crops) > 1:
            scores = (1 / box_area(seg.crop_boxes)).to(seg.boxes.device)
            keep = batched_nms(
                seg.boxes.float(),
                scores,
                torch.zeros(len(seg.boxes)),
                iou_threshold=self.crop_nms_thresh,
            )
            seg = seg.select(keep)
        if self.min_mask_region_area > 0 and len(seg):
            seg = self._remove_small_regions(seg)
        return seg

    def _remove_small_regions(self, seg: Segments) -> Segments:
        """segment-anything's ``postprocess_small_regions``: OpenCV's connected components per
        mask (holes, then islands), boxes again, NMS preferring the unchanged masks."""
        from segment_anything.utils.amg import batched_mask_to_box, remove_small_regions
        from torchvision.ops.boxes import batched_nms

        new_masks, scores = [], []
        for mask in seg.masks.cpu().numpy():
            mask, changed = remove_small_regions(mask, self.min_mask_region_area, mode="holes")
            unchanged = not changed
            mask, changed = remove_small_regions(mask, self.min_mask_region_area, mode="islands")
            new_masks.append(torch.as_tensor(mask))
            scores.append(float(unchanged and not changed))
        masks = torch.stack(new_masks)
        boxes = batched_mask_to_box(masks)
        keep = batched_nms(
            boxes.float(),
            torch.as_tensor(scores),
            torch.zeros(len(boxes)),
            iou_threshold=max(self.box_nms_thresh, self.crop_nms_thresh),
        )
        changed = torch.as_tensor(scores) == 0.0
        seg.masks = masks.to(seg.masks.device)
        changed = changed[:, None].to(seg.boxes.device)
        seg.boxes = torch.where(changed, boxes.to(seg.boxes), seg.boxes)
        return seg.select(keep)


def _shared(linear: torch.nn.Module, x: torch.Tensor, b: int) -> torch.Tensor:
    """``linear`` of one ``(1, N, C)`` input, for ``b`` prompts that share it."""
    return linear(x).expand(b, -1, -1).contiguous()


def _attention(attn: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """segment-anything's ``Attention.forward`` after its input projections."""
    q = attn._separate_heads(q, attn.num_heads)
    k = attn._separate_heads(k, attn.num_heads)
    v = attn._separate_heads(v, attn.num_heads)
    _, _, _, c_per_head = q.shape
    weights = q @ k.permute(0, 1, 3, 2)
    weights = weights / math.sqrt(c_per_head)
    weights = torch.softmax(weights, dim=-1)
    return attn.out_proj(attn._recombine_heads(weights @ v))


def _two_way_transformer(
    transformer: torch.nn.Module,
    image: torch.Tensor,
    image_pe: torch.Tensor,
    tokens: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """segment-anything's ``TwoWayTransformer.forward`` for ``B`` prompts on one image.

    The image embedding is the same for every prompt until the first block's image-to-token
    attention changes it, so the projections of it there (the token-to-image keys and values,
    the image-to-token queries: three of the block's four ``4096 x 256`` projections) are
    computed once, not ``B`` times. Each row of a matrix product does not depend on how many
    rows there are on the CPU (``tests/masks/test_amg.py`` checks the masks bit for bit).

    Arguments:
        image: ``(1, C, h, w)`` image embedding plus the dense prompt embedding.
        image_pe: ``(1, C, h, w)`` positional encoding.
        tokens: ``(B, T, C)`` output and prompt tokens.

    Returns:
        ``(B, T, C)`` tokens and ``(B, h * w, C)`` image embedding, as the transformer's.
    """
    b = tokens.shape[0]
    keys = image.flatten(2).permute(0, 2, 1)
    key_pe = image_pe.flatten(2).permute(0, 2, 1)
    first = transformer.layers[0]
    if not getattr(first, "skip_first_layer_pe", False):  # not segment-anything's layout
        return transformer(image.expand(b, -1, -1, -1), image_pe.expand(b, -1, -1, -1), tokens)
    queries = first.norm1(first.self_attn(q=tokens, k=tokens, v=tokens))
    k = keys + key_pe
    t2i = first.cross_attn_token_to_image
    out = _attention(
        t2i, t2i.q_proj(queries + tokens), _shared(t2i.k_proj, k, b), _shared(t2i.v_proj, keys, b)
    )
    queries = first.norm2(queries + out)
    queries = first.norm3(queries + first.mlp(queries))
    q = queries + tokens
    i2t = first.cross_attn_image_to_token
    out = _attention(i2t, _shared(i2t.q_proj, k, b), i2t.k_proj(q), i2t.v_proj(queries))
    keys = first.norm4(keys + out)
    for layer in transformer.layers[1:]:
        queries, keys = layer(queries=queries, keys=keys, query_pe=tokens, key_pe=key_pe)
    q = queries + tokens
    k = keys + key_pe
    out = transformer.final_attn_token_to_image(q=q, k=k, v=keys)
    queries = transformer.norm_final_attn(queries + out)
    return queries, keys


def _cat(parts: list[Segments], size: Sequence[int], device: torch.device) -> Segments:
    if not parts:
        return Segments(
            torch.zeros((0, *size), dtype=torch.bool, device=device),
            torch.zeros(0, device=device),
            torch.zeros(0, device=device),
            torch.zeros((0, 4), dtype=torch.int64, device=device),
            torch.zeros((0, 2), dtype=torch.float64),
            torch.zeros((0, 4), dtype=torch.int64),
        )
    return Segments(*(torch.cat([getattr(p, k) for p in parts]) for k in _FIELDS))
