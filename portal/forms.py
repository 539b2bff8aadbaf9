"""Form plumbing shared by every area: service errors shown on the fields they concern."""

from __future__ import annotations

from flask_wtf import FlaskForm

from portal.errors import ValidationFailed


def show_errors(form: FlaskForm, exc: ValidationFailed) -> None:
    """Attach a service's ValidationFailed messages to the form's fields (or to the form as a whole)."""
    for field_name, messages in exc.errors.items():
        field = getattr(form, field_name, None) if field_name else None
        if field is not None and hasattr(field, "errors"):
            field.errors = list(field.errors) + list(messages)
        else:
            form.form_errors.extend(messages)


def first_errors(form: FlaskForm) -> dict[str, list[str]]:
    return {name: errs for name, errs in form.errors.items() if errs}
