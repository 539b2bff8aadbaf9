from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from portal.services.projects import MAX_DESCRIPTION


class ApplicationForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired()])
    template = SelectField("Template", validators=[DataRequired()], validate_choice=False)
    description = TextAreaField("Description", validators=[Length(max=MAX_DESCRIPTION)])
