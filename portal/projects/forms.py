from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from portal.services.projects import MAX_DESCRIPTION


class ProjectForm(FlaskForm):
    team = SelectField("Team", validators=[DataRequired()], validate_choice=False)
    name = StringField("Name", validators=[DataRequired()])
    description = TextAreaField("Description", validators=[Length(max=MAX_DESCRIPTION)])
