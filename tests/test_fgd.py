"""FGD (mmkd.methods.FGD) against the authors' FeatureLoss, written out below from yzd-v/FGD
mmdet/distillation/losses/fgd.py (commit c03a6cf3b3cb3cbfd5554dbf4766e7135747d22d): loss and
gradients (student features, every learnt parameter) in float64 on identical weights, boxes and
metas; the masks, the initialisation, presets, errors; and a build + one loss step through a
Distiller on the shapes-det demo config (random teacher weights)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config

import mmkd.methods.fgd  # noqa: F401  (registers FGD until mmkd.methods imports it)
from mmkd.methods.fgd import FGD, PRESETS, fgd_masks

from conftest import DEMO, DET, build, random_teacher_checkpoint

DEMO_CFG = f'{DEMO}/shapes_det/fgd_retinanet_r34-wide_r18-tiny_fpn_shapes.py'
#: float64 throughout; the only differences from the authors' arithmetic are the order of
#: operations (a (s - t)^2 vs (s sqrt(a) - t sqrt(a))^2, the GcBlock's bmm vs matmul).
RTOL, ATOL = 1e-10, 1e-12


class AuthorsFeatureLoss(nn.Module):
    """The authors' ``FeatureLoss`` (yzd-v/FGD mmdet/distillation/losses/fgd.py), as written
    there, less mmcv (its init is replaced by copying mmkd's weights in) and the registry."""

    def __init__(self, student_channels, teacher_channels, name, temp=0.5, alpha_fgd=0.001,
                 beta_fgd=0.0005, gamma_fgd=0.001, lambda_fgd=0.000005):
        super().__init__()
        self.temp = temp
        self.alpha_fgd = alpha_fgd
        self.beta_fgd = beta_fgd
        self.gamma_fgd = gamma_fgd
        self.lambda_fgd = lambda_fgd
        if student_channels != teacher_channels:
            self.align = nn.Conv2d(student_channels, teacher_channels, kernel_size=1,
                                   stride=1, padding=0)
        else:
            self.align = None
        self.conv_mask_s = nn.Conv2d(teacher_channels, 1, kernel_size=1)
        self.conv_mask_t = nn.Conv2d(teacher_channels, 1, kernel_size=1)
        self.channel_add_conv_s = nn.Sequential(
            nn.Conv2d(teacher_channels, teacher_channels // 2, kernel_size=1),
            nn.LayerNorm([teacher_channels // 2, 1, 1]), nn.ReLU(inplace=True),
            nn.Conv2d(teacher_channels // 2, teacher_channels, kernel_size=1))
        self.channel_add_conv_t = nn.Sequential(
            nn.Conv2d(teacher_channels, teacher_channels // 2, kernel_size=1),
            nn.LayerNorm([teacher_channels // 2, 1, 1]), nn.ReLU(inplace=True),
            nn.Conv2d(teacher_channels // 2, teacher_channels, kernel_size=1))

    def forward(self, preds_S, preds_T, gt_bboxes, img_metas):
        assert preds_S.shape[-2:] == preds_T.shape[-2:]
        if self.align is not None:
            preds_S = self.align(preds_S)
        N, C, H, W = preds_S.shape
        S_attention_t, C_attention_t = self.get_attention(preds_T, self.temp)
        S_attention_s, C_attention_s = self.get_attention(preds_S, self.temp)
        Mask_fg = torch.zeros_like(S_attention_t)
        Mask_bg = torch.ones_like(S_attention_t)
        wmin, wmax, hmin, hmax = [], [], [], []
        for i in range(N):
            new_boxxes = torch.ones_like(gt_bboxes[i])
            new_boxxes[:, 0] = gt_bboxes[i][:, 0] / img_metas[i]['img_shape'][1] * W
            new_boxxes[:, 2] = gt_bboxes[i][:, 2] / img_metas[i]['img_shape'][1] * W
            new_boxxes[:, 1] = gt_bboxes[i][:, 1] / img_metas[i]['img_shape'][0] * H
            new_boxxes[:, 3] = gt_bboxes[i][:, 3] / img_metas[i]['img_shape'][0] * H
            wmin.append(torch.floor(new_boxxes[:, 0]).int())
            wmax.append(torch.ceil(new_boxxes[:, 2]).int())
            hmin.append(torch.floor(new_boxxes[:, 1]).int())
            hmax.append(torch.ceil(new_boxxes[:, 3]).int())
            area = 1.0 / (hmax[i].view(1, -1) + 1 - hmin[i].view(1, -1)) / (
                wmax[i].view(1, -1) + 1 - wmin[i].view(1, -1))
            for j in range(len(gt_bboxes[i])):
                Mask_fg[i][hmin[i][j]:hmax[i][j] + 1, wmin[i][j]:wmax[i][j] + 1] = \
                    torch.maximum(Mask_fg[i][hmin[i][j]:hmax[i][j] + 1,
                                             wmin[i][j]:wmax[i][j] + 1], area[0][j])
            Mask_bg[i] = torch.where(Mask_fg[i] > 0, 0, 1)
            if torch.sum(Mask_bg[i]):
                Mask_bg[i] /= torch.sum(Mask_bg[i])
        fg_loss, bg_loss = self.get_fea_loss(preds_S, preds_T, Mask_fg, Mask_bg,
                                             C_attention_s, C_attention_t, S_attention_s,
                                             S_attention_t)
        mask_loss = self.get_mask_loss(C_attention_s, C_attention_t, S_attention_s,
                                       S_attention_t)
        rela_loss = self.get_rela_loss(preds_S, preds_T)
        loss = self.alpha_fgd * fg_loss + self.beta_fgd * bg_loss \
            + self.gamma_fgd * mask_loss + self.lambda_fgd * rela_loss
        return loss

    def get_attention(self, preds, temp):
        N, C, H, W = preds.shape
        value = torch.abs(preds)
        fea_map = value.mean(axis=1, keepdim=True)
        S_attention = (H * W * F.softmax((fea_map / temp).view(N, -1), dim=1)).view(N, H, W)
        channel_map = value.mean(axis=2, keepdim=False).mean(axis=2, keepdim=False)
        C_attention = C * F.softmax(channel_map / temp, dim=1)
        return S_attention, C_attention

    def get_fea_loss(self, preds_S, preds_T, Mask_fg, Mask_bg, C_s, C_t, S_s, S_t):
        loss_mse = nn.MSELoss(reduction='sum')
        Mask_fg = Mask_fg.unsqueeze(dim=1)
        Mask_bg = Mask_bg.unsqueeze(dim=1)
        C_t = C_t.unsqueeze(dim=-1)
        C_t = C_t.unsqueeze(dim=-1)
        S_t = S_t.unsqueeze(dim=1)
        fea_t = torch.mul(preds_T, torch.sqrt(S_t))
        fea_t = torch.mul(fea_t, torch.sqrt(C_t))
        fg_fea_t = torch.mul(fea_t, torch.sqrt(Mask_fg))
        bg_fea_t = torch.mul(fea_t, torch.sqrt(Mask_bg))
        fea_s = torch.mul(preds_S, torch.sqrt(S_t))
        fea_s = torch.mul(fea_s, torch.sqrt(C_t))
        fg_fea_s = torch.mul(fea_s, torch.sqrt(Mask_fg))
        bg_fea_s = torch.mul(fea_s, torch.sqrt(Mask_bg))
        fg_loss = loss_mse(fg_fea_s, fg_fea_t) / len(Mask_fg)
        bg_loss = loss_mse(bg_fea_s, bg_fea_t) / len(Mask_bg)
        return fg_loss, bg_loss

    def get_mask_loss(self, C_s, C_t, S_s, S_t):
        return torch.sum(torch.abs((C_s - C_t))) / len(C_s) + \
            torch.sum(torch.abs((S_s - S_t))) / len(S_s)

    def spatial_pool(self, x, in_type):
        batch, channel, width, height = x.size()
        input_x = x
        input_x = input_x.view(batch, channel, height * width)
        input_x = input_x.unsqueeze(1)
        if in_type == 0:
            context_mask = self.conv_mask_s(x)
        else:
            context_mask = self.conv_mask_t(x)
        context_mask = context_mask.view(batch, 1, height * width)
        context_mask = F.softmax(context_mask, dim=2)
        context_mask = context_mask.unsqueeze(-1)
        context = torch.matmul(input_x, context_mask)
        context = context.view(batch, channel, 1, 1)
        return context

    def get_rela_loss(self, preds_S, preds_T):
        loss_mse = nn.MSELoss(reduction='sum')
        context_s = self.spatial_pool(preds_S, 0)
        context_t = self.spatial_pool(preds_T, 1)
        out_s = preds_S
        out_t = preds_T
        channel_add_s = self.channel_add_conv_s(context_s)
        out_s = out_s + channel_add_s
        channel_add_t = self.channel_add_conv_t(context_t)
        out_t = out_t + channel_add_t
        return loss_mse(out_s, out_t) / len(out_s)


def det_samples(boxes_per_image, img_shape, batch_input_shape=None, boxes_type=None):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    out = []
    for boxes in boxes_per_image:
        s = DetDataSample(metainfo=dict(img_shape=img_shape, pad_shape=batch_input_shape or
                                        img_shape,
                                        batch_input_shape=batch_input_shape or img_shape,
                                        scale_factor=(1., 1.)))
        b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        if boxes_type is not None:
            b = boxes_type(b)
        s.gt_instances = InstanceData(bboxes=b, labels=torch.zeros(len(b), dtype=torch.long))
        out.append(s)
    return out


#: image 75 x 90 (h, w) -> feature maps 10 x 12 and 5 x 6 (not whole multiples: the scaling
#: floors and ceils); overlapping boxes, one reaching the bottom-right corner, one image empty.
IMG = (75, 90)
BOXES = [[[3.0, 4.5, 40.0, 33.0], [20.0, 10.0, 70.0, 50.0], [60.0, 55.0, 90.0, 75.0]],
         [[10.0, 12.0, 30.0, 28.0]],
         []]
SIZES = [(10, 12), (5, 6)]


def perturb(module, seed):
    """Random values for every parameter (the GcBlocks' zero-initialised last convs too), so
    every term and every path is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)


@pytest.mark.parametrize('preset', ['retinanet', 'fcos'])
@pytest.mark.parametrize('c_s', [6, 8])  # with / without the align conv
def test_fgd_equals_authors_feature_loss_and_gradient(preset, c_s):
    torch.manual_seed(0)
    c_t, n = 8, len(BOXES)
    s = [torch.randn(n, c_s, h, w, dtype=torch.float64) for h, w in SIZES]
    t = [torch.randn(n, c_t, h, w, dtype=torch.float64) * 1.5 for h, w in SIZES]
    method = FGD(preset=preset).double()
    method.build(tuple(s), tuple(t))
    method.double()
    perturb(method, 1)
    assert (method.connectors[0].align is not None) == (c_s != c_t)
    samples = det_samples(BOXES, IMG)

    s_ours = [x.clone().requires_grad_() for x in s]
    ours = method(tuple(s_ours), tuple(t), samples)['loss_fgd']
    ours.backward()

    authors = []
    for level in method.connectors:
        a = AuthorsFeatureLoss(c_s, c_t, 'loss_fgd', **PRESETS[preset]).double()
        a.load_state_dict(level.state_dict())
        authors.append(a)
    gt = [torch.tensor(b, dtype=torch.float64).reshape(-1, 4) for b in BOXES]
    metas = [dict(img_shape=IMG + (3,)) for _ in BOXES]
    s_theirs = [x.clone().requires_grad_() for x in s]
    theirs = sum(a(x, y, gt, metas) for a, x, y in zip(authors, s_theirs, t))
    theirs.backward()

    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=ATOL)
    for x, y in zip(s_ours, s_theirs):
        torch.testing.assert_close(x.grad, y.grad, rtol=RTOL, atol=ATOL)
    for level, a in zip(method.connectors, authors):
        theirs_grads = dict(a.named_parameters())
        for name, p in level.named_parameters():
            torch.testing.assert_close(p.grad, theirs_grads[name].grad, rtol=RTOL, atol=ATOL,
                                       msg=name)


def test_masks_by_hand():
    # a 40 x 40 image on a 4 x 4 map (10 px a cell): the box (5, 12)-(18, 25) covers columns
    # floor(0.5)=0 .. ceil(1.8)=2 and rows floor(1.2)=1 .. ceil(2.5)=3: 3 x 3 cells, 1/9 each.
    fg, bg = fgd_masks([torch.tensor([[5.0, 12.0, 18.0, 25.0]])], [(40, 40)], 4, 4)
    expected = torch.zeros(4, 4)
    expected[1:4, 0:3] = 1 / 9
    torch.testing.assert_close(fg[0], expected)
    torch.testing.assert_close(bg[0], (expected == 0).float() / 7)
    # a smaller box inside a larger one keeps the larger value (1 / its smaller area)
    fg, _ = fgd_masks([torch.tensor([[0.0, 0.0, 40.0, 40.0], [10.0, 10.0, 20.0, 20.0]])],
                      [(40, 40)], 4, 4)
    assert fg[0, 1, 1].item() == pytest.approx(1 / 4) and fg[0, 0, 0] == pytest.approx(1 / 25)
    # no boxes: all background, uniform
    fg, bg = fgd_masks([torch.zeros(0, 4)], [(40, 40)], 4, 4)
    assert fg.sum() == 0 and torch.allclose(bg, torch.full((1, 4, 4), 1 / 16))
    # a box covering everything: no background (its mask stays 0, as the authors')
    _, bg = fgd_masks([torch.tensor([[0.0, 0.0, 40.0, 40.0]])], [(40, 40)], 4, 4)
    assert bg.sum() == 0


def test_box_scale_mmdet_boxes_and_init():
    from mmdet.structures.bbox import HorizontalBoxes
    torch.manual_seed(0)
    s, t = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    method = FGD()
    method.build(s, t)
    level = method.connectors[0]
    # the authors' initialisation: zero last convs, so the global term starts as the plain
    # summed squared error / N; Kaiming-normal context masks with zero bias
    assert level.channel_add_conv_s[-1].weight.abs().sum() == 0
    assert level.conv_mask_t.bias.abs().sum() == 0 and level.conv_mask_t.weight.std() > 0
    assert level.relation(s, t).item() == pytest.approx(((s - t) ** 2).sum().item(), rel=1e-6)
    # mmdet's box type reads as its tensor; img_shape vs the padded batch_input_shape
    plain = det_samples([[[0.0, 0.0, 16.0, 16.0]]], (32, 32), (64, 64))
    boxed = det_samples([[[0.0, 0.0, 16.0, 16.0]]], (32, 32), (64, 64), HorizontalBoxes)
    a = method(s, t, plain)['loss_fgd']
    assert method(s, t, boxed)['loss_fgd'].item() == pytest.approx(a.item())
    padded = FGD(box_scale='batch_input_shape')
    padded.build(s, t)
    padded.load_state_dict(method.state_dict())
    b = padded(s, t, plain)['loss_fgd']
    assert b.item() != pytest.approx(a.item())  # the box covers half vs a quarter of the map
    same = det_samples([[[0.0, 0.0, 16.0, 16.0]]], (64, 64), (64, 64))
    assert padded(s, t, same)['loss_fgd'].item() == pytest.approx(
        method(s, t, same)['loss_fgd'].item())


def test_presets_overrides_and_errors():
    fgd = FGD(preset='two_stage', temp=0.7, lambda_fgd=0.0)
    assert (fgd.temp, fgd.alpha_fgd, fgd.beta_fgd, fgd.gamma_fgd, fgd.lambda_fgd) == (
        0.7, 5e-5, 2.5e-5, 5e-5, 0.0)
    assert FGD().gamma_fgd == 5e-4  # the authors' configs, not FeatureLoss's default 1e-3
    with pytest.raises(ValueError, match='preset'):
        FGD(preset='yolo')
    with pytest.raises(ValueError, match='temp'):
        FGD(temp=0.0)
    with pytest.raises(ValueError, match='box_scale'):
        FGD(box_scale='pad_shape')
    s, t = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    with pytest.raises(ValueError, match='same strides'):
        FGD().build(s, torch.randn(2, 4, 8, 8))
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        FGD().build(torch.randn(2, 4), torch.randn(2, 4))
    method = FGD()
    method.build(s, t)
    with pytest.raises(ValueError, match='gt_instances'):
        method(s, t, None)
    with pytest.raises(ValueError, match='gt_instances'):
        method(s, t, det_samples([[]], (32, 32)))  # one sample for a batch of 2


def test_demo_config_builds_and_takes_a_loss_step(tmp_path):
    """The shapes-det demo config through a Distiller: build (random teacher weights), one
    loss step, gradients reach the student's neck and FGD's modules."""
    ckpt = random_teacher_checkpoint(DET['teacher'], str(tmp_path / 't.pth'))
    cfg = Config.fromfile(DEMO_CFG)
    cfg.model.teacher.checkpoint = ckpt
    torch.manual_seed(0)
    distiller = build(cfg.model, 'mmdet')
    method = distiller.blocks['fpn'].method
    assert len(method.connectors) == 3  # one per FPN level
    assert method.connectors[0].align.in_channels == 64  # student 64 -> teacher 128 channels
    samples = det_samples([[[4.0, 4.0, 30.0, 30.0]], [[20.0, 30.0, 50.0, 60.0]]], (64, 64))
    losses = distiller(torch.randn(2, 3, 64, 64), samples, mode='loss')
    assert {'student.loss_cls', 'student.loss_bbox', 'distill.fpn.loss_fgd'} <= set(losses)
    loss = losses['distill.fpn.loss_fgd']
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert distiller.student.neck.fpn_convs[0].conv.weight.grad.abs().sum() > 0
    assert method.connectors[0].align.weight.grad.abs().sum() > 0
    assert method.connectors[0].channel_add_conv_t[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in distiller.teacher.parameters())
