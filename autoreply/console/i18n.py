"""The console's two languages: which one a request gets, and the translated labels.

The language is, first match wins: ``?lang=zh|en`` (which also sets the ``autoreply_lang``
cookie, so the choice sticks), that cookie, the browser's ``Accept-Language`` (by quality;
any ``zh-*`` is Chinese), else English. Customer and agent text is never translated.
"""

from __future__ import annotations

from enum import StrEnum

from fastapi import Request


class Lang(StrEnum):
    EN = "en"
    ZH = "zh"


LANG_COOKIE = "autoreply_lang"

# key -> (English, 中文). Placeholders use str.format names.
MESSAGES: dict[str, tuple[str, str]] = {
    "app": ("autoreply console", "autoreply 客服工作台"),
    "inbox": ("Inbox", "工单队列"),
    "gaps": ("Gaps", "知识缺口"),
    "report": ("Report", "周报"),
    "knowledge": ("Knowledge", "知识库"),
    "sign_in": ("Sign in", "登录"),
    "sign_out": ("Sign out", "退出"),
    "token": ("Agent token", "坐席令牌"),
    "token_help": (
        "The same token as the API: an admin creates it with `autoreply agents add NAME`.",
        "与 API 相同的令牌：管理员用 `autoreply agents add NAME` 创建。",
    ),
    "signed_in_as": ("Signed in as {name} ({role})", "当前坐席：{name}（{role}）"),
    "signed_out": ("You are signed out.", "您已退出登录。"),
    "session_expired": (
        "Your session ended; sign in again.",
        "会话已结束，请重新登录。",
    ),
    "csrf_failed": (
        "The form was stale or came from another site (CSRF check failed); reload the page "
        "and try again.",
        "表单已过期或来自其他网站（CSRF 校验失败）；请刷新页面后重试。",
    ),
    "admin_only": (
        "This needs an admin token (autoreply agents add NAME --role admin).",
        "此操作需要管理员令牌（autoreply agents add NAME --role admin）。",
    ),
    "status": ("Status", "状态"),
    "active": ("Open and claimed", "待处理与处理中"),
    "open": ("Open", "待领取"),
    "claimed": ("Claimed", "处理中"),
    "resolved": ("Resolved", "已解决"),
    "all": ("All", "全部"),
    "mine": ("Mine only", "只看我的"),
    "priority": ("Priority", "优先级"),
    "any": ("Any", "不限"),
    "category": ("Category", "类别"),
    "vip": ("VIP", "VIP"),
    "vip_only": ("VIP only", "只看 VIP"),
    "filter": ("Filter", "筛选"),
    "ticket": ("Ticket", "工单"),
    "customer": ("Customer", "客户"),
    "question": ("Question", "问题"),
    "reason": ("Reason", "原因"),
    "owner": ("Owner", "负责人"),
    "waiting": ("Waiting", "等待时长"),
    "sla": ("First reply", "首次回复"),
    "sla_rule": (
        "First reply due within {vip} min for VIP customers and {normal} min for everyone "
        "else: green under half the time, amber after half, red when overdue.",
        "首次回复时限：VIP 客户 {vip} 分钟，其他客户 {normal} 分钟。未过半为绿色，过半为黄色，"
        "超时为红色。",
    ),
    "sla_ok": ("due in {minutes} min", "剩余 {minutes} 分钟"),
    "sla_soon": ("due in {minutes} min", "剩余 {minutes} 分钟"),
    "sla_overdue": ("overdue by {minutes} min", "已超时 {minutes} 分钟"),
    "sla_met": ("replied in time", "已按时回复"),
    "sla_late": ("replied late", "回复超时"),
    "sla_none": ("—", "—"),
    "live": ("Live: refreshed {time}", "实时：{time} 已刷新"),
    "no_tickets": ("No tickets match.", "没有符合条件的工单。"),
    "conversation": ("Conversation", "对话记录"),
    "role_customer": ("Customer", "客户"),
    "role_bot": ("Bot", "机器人"),
    "role_agent": ("Agent", "人工"),
    "confidence": ("confidence", "置信度"),
    "handoff": ("Escalation and handoff payload", "转人工原因与交接信息"),
    "candidates": ("The bot's top entries", "机器人的候选条目"),
    "attempts": ("The bot's earlier replies", "机器人之前的回复"),
    "suggested_owner": ("Suggested owner", "建议负责人"),
    "raw_payload": ("Raw payload (JSON)", "原始交接数据（JSON）"),
    "earlier_tickets": ("The customer's earlier tickets", "该客户的历史工单"),
    "none": ("None.", "无。"),
    "claim": ("Claim", "领取"),
    "transfer": ("Transfer", "转交"),
    "transfer_to": ("Transfer to", "转交给"),
    "resolve": ("Resolve", "解决"),
    "resolution": ("Resolution (default: your last reply)", "解决说明（默认：您的最后一条回复）"),
    "reply": ("Reply", "回复"),
    "send": ("Send", "发送"),
    "scripts": ("Standard scripts (top FAQ answers)", "标准话术（最相关的 FAQ 答案）"),
    "insert": ("Insert", "插入"),
    "prohibited_found": (
        "Contains the prohibited phrase “{phrase}”: it will not be sent.",
        "包含违规话术“{phrase}”，无法发送。",
    ),
    "prohibited_refused": (
        "Not sent: the reply contains the prohibited phrase “{phrase}” (recorded). Rephrase "
        "it and send again.",
        "未发送：回复包含违规话术“{phrase}”（已记录）。请修改后再发送。",
    ),
    "sent": ("Reply sent ({status}).", "回复已发送（{status}）。"),
    "claimed_ok": ("You own ticket {id} now.", "您已领取工单 {id}。"),
    "transferred_ok": ("Ticket {id} transferred to {to}.", "工单 {id} 已转交给 {to}。"),
    "resolved_ok": ("Ticket {id} resolved.", "工单 {id} 已解决。"),
    "promote": ("Promote this answer to the FAQ", "将此答案提交为 FAQ"),
    "promoted_ok": (
        "Proposed as FAQ candidate {id}; an admin reviews it under Knowledge.",
        "已提交为 FAQ 候选 {id}，由管理员在“知识库”页面审核。",
    ),
    "answer": ("Answer", "答案"),
    "variants": ("Variants (one per line)", "相似问（每行一个）"),
    "tags": ("Tags (comma separated)", "标签（逗号分隔）"),
    "escalate_flag": ("Always hand to a person", "始终转人工"),
    "enabled": ("Enabled", "启用"),
    "deliveries": ("Deliveries", "投递记录"),
    "topics": ("Gap topics", "缺口主题"),
    "gaps_help": (
        "Questions the FAQ could not answer, grouped by meaning. Review a draft to edit it, "
        "check it and accept it into a knowledge file (the index reloads).",
        "FAQ 未能回答的问题，按语义分组。审阅草稿可编辑、检查并采纳到知识文件"
        "（索引随即重新加载）。",
    ),
    "kind_new": ("new entry needed", "需要新条目"),
    "kind_near_miss": ("near miss of {entry}", "接近条目 {entry}"),
    "count": ("Gaps", "次数"),
    "trend": ("Last 8 weeks", "近 8 周"),
    "examples": ("Examples", "示例"),
    "suggestion": ("Suggested FAQ entry", "建议的 FAQ 条目"),
    "needs_answer": ("Needs an answer: write one.", "缺少答案：请填写。"),
    "into": ("Write into", "写入文件"),
    "accept": ("Accept", "采纳"),
    "dismiss": ("Dismiss", "忽略"),
    "accepted_ok": (
        "Entry {entry} written into {file}; index reloaded ({entries} entries).",
        "条目 {entry} 已写入 {file}，索引已重新加载（共 {entries} 条）。",
    ),
    "dismissed_ok": ("Dismissed.", "已忽略。"),
    "review": ("Review and accept", "审阅并采纳"),
    "review_title": ("Accept gap topic #{id}", "采纳缺口主题 #{id}"),
    "review_help": (
        "Edit the entry, tick the variants that ask the same thing (ticked by default: the "
        "ones close in meaning to the question), add more one per line, then Check: the same "
        "checks as `autoreply check` run on the knowledge base with this entry in it. Nothing "
        "else in any file changes; every change can be undone at the bottom of the Knowledge page.",
        "编辑条目，勾选与问题意思相同的变体（默认只勾选语义接近问题的），每行添加一个新变体，"
        "然后点“检查”：在包含此条目的知识库上运行与 `autoreply check` 相同的检查。"
        "文件中其他内容不会改变；每次修改都可在知识库页面撤销。",
    ),
    "suggested_variants": ("Suggested variants", "建议的变体"),
    "more_variants": ("More variants, one per line", "更多变体，每行一个"),
    "check": ("Check", "检查"),
    "check_ok": ("Check passed: no problems, no conflicts.", "检查通过：没有问题，没有冲突。"),
    "check_errors": ("Errors (cannot be saved)", "错误（无法保存）"),
    "check_warnings": ("Warnings", "警告"),
    "force": ("Save despite warnings", "忽略警告仍然保存"),
    "near_miss_into": (
        "The ticked variants are added to entry {entry} in {file}.",
        "勾选的变体将添加到 {file} 中的条目 {entry}。",
    ),
    "changes": ("Changes to the knowledge files", "知识文件的修改记录"),
    "changes_help": (
        "Every accept, add and edit, newest first. Undo puts the file back exactly as it was "
        "before the newest change still in effect.",
        "每次采纳、添加和编辑，最新的在前。撤销会把文件恢复为最近一次仍生效的修改之前的原样。",
    ),
    "undo": ("Undo the newest change", "撤销最近的修改"),
    "undone": ("undone", "已撤销"),
    "undone_ok": (
        "Change {change} ({entry}) undone; index reloaded ({entries} entries).",
        "修改 {change}（{entry}）已撤销，索引已重新加载（共 {entries} 条）。",
    ),
    "no_changes": ("No changes yet.", "暂无修改。"),
    "no_topics": ("No gap topics yet.", "暂无缺口主题。"),
    "keywords": ("Keywords", "关键词"),
    "week": ("Week", "周"),
    "show": ("Show", "查看"),
    "previous_week": ("← previous week", "← 上一周"),
    "next_week": ("next week →", "下一周 →"),
    "download": ("Download", "下载"),
    "questions": ("Questions", "提问数"),
    "answered": ("Answered", "自动回答"),
    "clarified": ("Clarified", "澄清"),
    "escalated": ("Escalated", "转人工"),
    "deflection": ("Deflection rate", "自助解决率"),
    "search": ("Search", "搜索"),
    "search_placeholder": ("Search questions, answers, ids", "搜索问题、答案或 ID"),
    "all_categories": ("All categories", "全部类别"),
    "entries": ("{n} entries", "{n} 个条目"),
    "best_matches": ("Best matches by meaning", "语义最相近"),
    "edit": ("Edit", "编辑"),
    "save": ("Save and reload", "保存并重新加载"),
    "saved_ok": (
        "Saved to {file}; index reloaded ({entries} entries).",
        "已保存到 {file}，索引已重新加载（共 {entries} 条）。",
    ),
    "source": ("Source", "来源"),
    "feedback": ("Feedback on this entry's answers", "对此条目答案的反馈"),
    "helpful": ("helpful", "有帮助"),
    "not_helpful": ("not helpful", "没帮助"),
    "fb_summary": ("{up} helpful, {down} not helpful", "{up} 有帮助，{down} 没帮助"),
    "pending_candidates": ("FAQ candidates from agents", "坐席提交的 FAQ 候选"),
    "learned": ("Phrasings learned from conversations", "从对话中学到的问法"),
    "learned_help": (
        'Customers\' questions shown to belong to an entry: a "did you mean" pick, an '
        "agent's standard script, a helpful vote, a promote. Accept writes the phrasing into "
        "the entry as a variant (undoable).",
        "已证明属于某条目的客户问题：“您是不是想问”中的选择、坐席发送的标准话术、“有帮助”投票、"
        "提交为 FAQ。采纳后作为相似问写入该条目（可撤销）。",
    ),
    "evidence": ("Evidence", "依据"),
    "flagged": ("Check first", "请先核对"),
    "src_picked": ("picked", "客户选择"),
    "src_agent_script": ("agent script", "坐席话术"),
    "src_helpful": ("helpful", "有帮助"),
    "src_promote": ("promoted", "提交 FAQ"),
    "learned_ok": (
        "Added to {entry}: {file}; {entries} entries loaded.",
        "已加入 {entry}：{file}；已加载 {entries} 个条目。",
    ),
    "entry_id": ("Entry id", "条目 ID"),
    "from_ticket": ("from ticket {id} by {agent}", "来自工单 {id}（{agent}）"),
    "new_file": ("{name} (new file)", "{name}（新文件）"),
    "error": ("Something went wrong", "出错了"),
    "not_found": ("Not found", "未找到"),
    "back": ("Back", "返回"),
    "language": ("中文", "English"),
    "created": ("Created", "创建时间"),
    "channel": ("Channel", "渠道"),
    "unassigned": ("unassigned", "未领取"),
    "minutes": ("{n} min", "{n} 分钟"),
    "hours_minutes": ("{h} h {m} min", "{h} 小时 {m} 分钟"),
    "days_hours": ("{d} d {h} h", "{d} 天 {h} 小时"),
    "note_added": ("Note added (agents only).", "已添加备注（仅坐席可见）。"),
    "tagged_ok": ("Tags saved.", "标签已保存。"),
    "bulk_pick_action": ("Pick an action for the ticked tickets.", "请为选中的工单选择操作。"),
    "bulk_done": ("{action}: {n} ticket(s) done.", "{action}：已处理 {n} 个工单。"),
    "bulk": ("With the ticked tickets", "批量处理选中的工单"),
    "select_ticket": ("Select ticket {id}", "选择工单 {id}"),
    "select_all": ("Select all", "全选"),
    "apply": ("Apply", "执行"),
    "tag": ("Tag", "打标签"),
    "tags_label": ("Tags", "标签"),
    "add_tags": ("Add tags (comma separated)", "添加标签（逗号分隔）"),
    "remove_tag": ("Remove tag {tag}", "删除标签 {tag}"),
    "notes": ("Internal notes", "内部备注"),
    "notes_help": (
        "Only agents see notes; they are never sent to the customer.",
        "备注仅坐席可见，绝不会发送给客户。",
    ),
    "add_note": ("Add note", "添加备注"),
    "search_tickets": ("Search text or customer", "搜索内容或客户"),
    "agent": ("Agent", "坐席"),
    "opened_from": ("Opened from", "开始日期"),
    "opened_until": ("until", "结束日期"),
    "profile": ("Customer", "客户资料"),
    "identity": ("Channel identity", "渠道身份"),
    "vip_set_by": ("VIP, set by {who}", "VIP（由 {who} 设置）"),
    "not_vip": ("Not VIP", "非 VIP"),
    "conversations": ("Conversations", "会话"),
    "csat": ("Customer rating", "客户评分"),
    "name": ("Name", "姓名"),
    "customer_id": ("Customer id", "客户 ID"),
    "email": ("E-mail", "邮箱"),
    "phone": ("Phone", "电话"),
    "likely_category": (
        "the category of the nearest FAQ entry (the bot was not sure)",
        "最相近 FAQ 条目的分类（机器人不确定）",
    ),
}


def pick_language(request: Request) -> Lang:
    """The language for this request (see the module docstring)."""
    for value in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if value in (Lang.EN.value, Lang.ZH.value):
            return Lang(value)
    return from_accept_language(request.headers.get("accept-language", ""))


def from_accept_language(header: str) -> Lang:
    """``zh-CN,zh;q=0.9,en;q=0.8`` → zh; the highest-quality supported language wins."""
    best: tuple[float, Lang] | None = None
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary not in ("zh", "en") or quality <= 0:
            continue
        # Earlier wins a tie: subtract a tiny amount per position.
        score = quality - position * 1e-6
        if best is None or score > best[0]:
            best = (score, Lang(primary))
    return best[1] if best else Lang.EN


class Translator:
    """``t("inbox")`` → the label in this request's language; ``t("sent", status=...)``."""

    def __init__(self, lang: Lang) -> None:
        self.lang = lang
        self._column = 1 if lang is Lang.ZH else 0

    def __call__(self, key: str, **values: object) -> str:
        pair = MESSAGES.get(key)
        text = pair[self._column] if pair else key
        return text.format(**values) if values else text

    def duration(self, seconds: float) -> str:
        """A waiting time: ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
        minutes = max(0, int(seconds // 60))
        if minutes < 60:
            return self("minutes", n=minutes)
        hours, rest = divmod(minutes, 60)
        if hours < 48:
            return self("hours_minutes", h=hours, m=rest)
        days, hours = divmod(hours, 24)
        return self("days_hours", d=days, h=hours)
